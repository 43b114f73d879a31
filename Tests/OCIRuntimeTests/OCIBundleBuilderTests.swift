import ContainerRuntime
import Foundation
@testable import OCIRuntime
import PlaneCore
import Testing

/// The secure defaults of a backend's `config.json`, and the default seccomp profile as the
/// host's libseccomp resolves it.
struct OCIBundleBuilderTests {
    func spec(limits: ResourceLimitsSpec = ResourceLimitsSpec(), env: [String: String] = ["GREETING": "hi", "PATH": "/custom"]) -> BackendSpec {
        BackendSpec(backendID: BackendID(validatedRawValue: "bk-123"), droneID: .random(), image: "oci-layout:/img", env: env, port: 23456,
                    network: .host(address: "127.0.0.1"), limits: limits)
    }

    let image = OCIImageConfiguration(config: .init(user: nil, env: ["PATH=/usr/bin", "LANG=C.UTF-8", "PORT=1"], entrypoint: ["/server"], cmd: ["--flag"], workingDir: "/app"))

    @Test func processEnvironmentAndSecureDefaults() throws {
        let builder = OCIBundleBuilder(seccomp: try SeccompProfile.standard().seccomp, defaultPidsLimit: 1024, readOnlyRoot: false)
        let config = try builder.build(spec: spec(), image: image, user: .init(uid: 0, gid: 0), rootPath: "rootfs", network: .host)
        #expect(config.process.args == ["/server", "--flag"])
        #expect(config.process.cwd == "/app")
        #expect(config.process.env.contains("PATH=/custom"), "the spawn's env wins over the image's")
        #expect(config.process.env.contains("LANG=C.UTF-8"))
        #expect(config.process.env.contains("PORT=23456") && !config.process.env.contains("PORT=1"), "PORT is the drone's")
        #expect(config.process.terminal == false)
        #expect(config.process.noNewPrivileges)
        #expect(Set(config.process.capabilities.bounding) == Set(OCIBundleBuilder.defaultCapabilities))
        // Docker's 14 without CAP_NET_RAW.
        #expect(config.process.capabilities.bounding.count == 13 && !config.process.capabilities.bounding.contains("CAP_SYS_ADMIN"))
        #expect(!config.process.capabilities.bounding.contains("CAP_NET_RAW"))
        #expect(config.linux.namespaces.map(\.type) == ["pid", "ipc", "uts", "mount"], "host network: no network namespace")
        #expect(config.mounts.contains { $0.destination == "/etc/hosts" && $0.source == "/etc/hosts" }, "host network: the host's hosts file")
        #expect(config.linux.resources.pids?.limit == 1024, "a default pids limit")
        #expect(config.linux.resources.memory == nil, "no default memory limit set on this builder")
        var limited = builder
        limited.defaultMemoryBytes = 512 << 20
        let defaulted = try limited.build(spec: spec(), image: image, user: .init(uid: 0, gid: 0), rootPath: "rootfs", network: .host)
        #expect(defaulted.linux.resources.memory == .init(limit: 512 << 20, swap: 512 << 20), "the drone's default when the spawn sets none")
        let own = try limited.build(spec: spec(limits: ResourceLimitsSpec(memoryBytes: 2 << 30)), image: image, user: .init(uid: 0, gid: 0), rootPath: "rootfs", network: .host)
        #expect(own.linux.resources.memory?.limit == 2 << 30, "a spawn's own limit wins, above the default too")
        #expect(config.linux.maskedPaths.contains("/proc/kcore") && config.linux.readonlyPaths.contains("/proc/sys"))
        #expect(config.linux.resources.devices.first == .init(allow: false, access: "rwm"))
        #expect(config.mounts.contains { $0.destination == "/sys" && $0.options?.contains("ro") == true })
        #expect(config.linux.cgroupsPath == "/plane/bk-123")
        #expect(config.root == .init(path: "rootfs", readonly: false))
        // It encodes as the runtime-spec's JSON.
        let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as? [String: Any])
        #expect(json["ociVersion"] as? String == "1.0.2")
        #expect((json["linux"] as? [String: Any])?["seccomp"] != nil)
    }

    @Test func limitsReadOnlyRootAndNetworkNamespace() throws {
        let limits = ResourceLimitsSpec(memoryBytes: 64 << 20, cpuPeriodMicroseconds: 100_000, cpuQuotaMicroseconds: 50_000, cpuTimeLimitSeconds: 30, pidsLimit: 50)
        let builder = OCIBundleBuilder(seccomp: nil, defaultPidsLimit: 1024, readOnlyRoot: true)
        let config = try builder.build(spec: spec(limits: limits), image: image, user: .init(uid: 1000, gid: 1000), rootPath: "/r",
                                       network: .namespace(path: "/run/netns/x", hostsFile: "/b/hosts", resolvConfFile: "/b/resolv.conf"))
        #expect(config.linux.resources.memory == .init(limit: 64 << 20, swap: 64 << 20), "no swap beyond the limit")
        #expect(config.linux.resources.cpu == .init(quota: 50_000, period: 100_000))
        #expect(config.linux.resources.pids?.limit == 50)
        #expect(config.process.rlimits.contains(.init(type: "RLIMIT_CPU", hard: 30, soft: 30)))
        #expect(config.root.readonly && config.mounts.contains { $0.destination == "/tmp" && $0.type == "tmpfs" })
        #expect(config.linux.namespaces.contains(.init(type: "network", path: "/run/netns/x")))
        #expect(config.mounts.contains { $0.destination == "/etc/hosts" && $0.source == "/b/hosts" && $0.options?.contains("ro") == true },
                "a namespace gets the backend's own hosts file")
        #expect(config.mounts.contains { $0.destination == "/etc/resolv.conf" && $0.source == "/b/resolv.conf" })
        #expect(throws: RuntimeError.self) {
            try builder.build(spec: spec(), image: OCIImageConfiguration(config: .init()), user: .init(uid: 0, gid: 0), rootPath: "r", network: .host)
        }
    }

    @Test func usersResolveAgainstTheImagesFiles() throws {
        let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
        let group = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\n"
        #expect(try OCIBundleBuilder.resolveUser(nil, passwd: passwd, group: group, image: "i") == .init(uid: 0, gid: 0))
        #expect(try OCIBundleBuilder.resolveUser("app", passwd: passwd, group: group, image: "i") == .init(uid: 1000, gid: 1001, additionalGids: [50]))
        #expect(try OCIBundleBuilder.resolveUser("1000:staff", passwd: passwd, group: group, image: "i").gid == 50)
        #expect(try OCIBundleBuilder.resolveUser("4242:4343", passwd: nil, group: nil, image: "i") == .init(uid: 4242, gid: 4343))
        #expect(throws: RuntimeError.self) { try OCIBundleBuilder.resolveUser("nobody-here", passwd: passwd, group: group, image: "i") }
        #expect(throws: RuntimeError.self) { try OCIBundleBuilder.resolveUser("app:nogroup", passwd: passwd, group: group, image: "i") }
    }

    @Test func defaultSeccompProfileResolvesOnThisHost() throws {
        let profile = try SeccompProfile.standard()
        #expect(profile.seccomp.defaultAction == "SCMP_ACT_ERRNO" && profile.seccomp.defaultErrnoRet == 1, "EPERM for everything not listed")
        for allowed in ["read", "write", "openat", "epoll_wait", "futex", "execve"] { #expect(profile.allows(allowed), "\(allowed)") }
        for denied in ["mount", "umount2", "unshare", "keyctl", "add_key", "kexec_load", "init_module", "finit_module", "delete_module",
                       "bpf", "setns", "pivot_root", "reboot", "swapon", "open_by_handle_at", "userfaultfd", "perf_event_open"] {
            #expect(!profile.seccomp.syscalls.contains { $0.names.contains(denied) }, "\(denied) must not be listed")
        }
        #if arch(x86_64)
        #expect(profile.allows("arch_prctl"))
        #expect(!profile.seccomp.syscalls.contains { $0.names.contains("chown32") }, "names of other architectures are dropped")
        #endif
        #expect(profile.seccomp.syscalls.contains { $0.names == ["clone"] && $0.args?.first?.op == "SCMP_CMP_MASKED_EQ" }, "clone only without namespace flags")
        #expect(profile.seccomp.syscalls.contains { $0.names == ["clone3"] && $0.action == "SCMP_ACT_ERRNO" && $0.errnoRet == 38 }, "clone3 is ENOSYS so libc falls back to clone")
    }

    @Test func profilesWithUnknownNamesOrActionsFailEarly() {
        let unknown = #"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","not_a_syscall"],"action":"SCMP_ACT_ALLOW"}]}"#
        #expect { try SeccompProfile(json: Data(unknown.utf8), source: "test profile") } throws: {
            ($0 as? RuntimeError)?.message.contains("'not_a_syscall'") ?? false
        }
        let badAction = #"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"ALLOW_ALL"}]}"#
        #expect { try SeccompProfile(json: Data(badAction.utf8), source: "test profile") } throws: {
            ($0 as? RuntimeError)?.message.contains("ALLOW_ALL") ?? false
        }
        #expect(throws: RuntimeError.self) { try SeccompProfile(json: Data("{".utf8), source: "test profile") }
    }
}
