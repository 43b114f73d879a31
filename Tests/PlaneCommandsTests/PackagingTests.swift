import Foundation
import PlaneCore
import PlaneTestSupport
import Testing

/// `make package` (scripts/package.sh) with the test build's `plane`: the Debian package
/// installs with dpkg into a fresh root, its units pass `systemd-analyze verify` there, its
/// example configurations are valid, a controller starts from the installed binary and
/// answers, and the postinst makes the `plane` user and the configuration (run with stand-in
/// commands, so the test machine's users stay as they are).
struct PackagingTests {
    @Test(.timeLimit(.minutes(3))) func theDebianPackageInstallsAndAControllerRunsFromIt() async throws {
        let work = try TestEnvironment.temporaryDirectory("package")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let root = PythonEnvironment.packageRoot
        let (built, buildOutput) = try await SystemProgram.run(executable: "/bin/bash", [root + "/scripts/package.sh"], environment: [
            "BINARY": try TestExecutables.path("plane"), "NO_IMAGE": "1", "DEB_COMPRESSION": "none", "OUT": work + "/out"])
        #expect(built == 0, "\(buildOutput)")
        let debs = try FileManager.default.contentsOfDirectory(atPath: work + "/out").filter { $0.hasSuffix(".deb") }
        let deb = work + "/out/" + (try #require(debs.first, "\(buildOutput)"))
        #expect(deb.hasSuffix("plane_\(PlaneVersion.current)_amd64.deb") || deb.hasSuffix("plane_\(PlaneVersion.current)_arm64.deb"))
        let dpkgDeb = SystemProgram("dpkg-deb", debianPackage: "dpkg")
        let depends = try await dpkgDeb.run(["--field", deb, "Depends"])
        #expect(depends.contains("libsqlite3-0") && depends.contains("adduser"), "\(depends)")

        // A fresh root with an empty dpkg database: dpkg unpacks the package into it.
        let fresh = work + "/root"
        for directory in ["/var/lib/dpkg/updates", "/var/lib/dpkg/info"] {
            try FileManager.default.createDirectory(atPath: fresh + directory, withIntermediateDirectories: true)
        }
        _ = FileManager.default.createFile(atPath: fresh + "/var/lib/dpkg/status", contents: Data())
        let (unpacked, unpackOutput) = try await SystemProgram.run(executable: try SystemProgram("dpkg", debianPackage: "dpkg").path(),
                                                                   ["--root=\(fresh)", "--force-depends", "--unpack", deb])
        #expect(unpacked == 0, "\(unpackOutput)")
        let plane = fresh + "/usr/bin/plane"
        #expect(FileManager.default.isExecutableFile(atPath: plane))
        for file in ["/lib/systemd/system/plane-controller.service", "/lib/systemd/system/plane-drone.service", "/usr/share/plane/examples/controller.toml",
                     "/usr/share/plane/examples/drone.toml", "/usr/share/doc/plane/operations.md", "/var/lib/dpkg/info/plane.postinst"] {
            #expect(FileManager.default.fileExists(atPath: fresh + file), "\(file)")
        }

        // The units, checked by systemd against the fresh root (with systemd's own targets).
        let units = try FileManager.default.contentsOfDirectory(atPath: "/lib/systemd/system").filter { $0.hasSuffix(".target") }
        for unit in units { try? FileManager.default.copyItem(atPath: "/lib/systemd/system/" + unit, toPath: fresh + "/lib/systemd/system/" + unit) }
        let analyze = try SystemProgram("systemd-analyze", debianPackage: "systemd").path()
        let (verified, verifyOutput) = try await SystemProgram.run(executable: analyze, ["verify", "--root=\(fresh)", fresh + "/lib/systemd/system/plane-controller.service",
                                                                                         fresh + "/lib/systemd/system/plane-drone.service"])
        #expect(verified == 0 && !verifyOutput.contains("ignoring") && !verifyOutput.contains("Unknown"), "\(verifyOutput)")
        let controllerUnit = try String(contentsOfFile: fresh + "/lib/systemd/system/plane-controller.service", encoding: .utf8)
        for option in ["User=plane", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"] {
            #expect(controllerUnit.contains(option), "\(option)")
        }

        // The examples are valid configurations; a controller starts from the installed binary.
        for (command, example) in [("controller", "controller.toml"), ("drone", "drone.toml")] {
            let (status, output) = try await SystemProgram.run(executable: plane, [command, "--dump-config", fresh + "/usr/share/plane/examples/" + example])
            #expect(status == 0, "\(example): \(output)")
        }
        try await withNATSServer { server in
            let port = try TestEnvironment.freePort()
            try "[nats]\nhosts = [\"\(server.url)\"]\n[scheduler]\n[http]\ncluster = \"plane.test\"\nbind_ip = \"127.0.0.1\"\nport = \(port)\n"
                .write(toFile: work + "/controller.toml", atomically: true, encoding: .utf8)
            let controller = try ChildProcess(plane, arguments: ["controller", "--config", work + "/controller.toml"])
            let health = try await HTTPProbe(port: port).waitUntilAnswering("/healthz", within: .seconds(30))
            #expect(health.status == 200, "\(controller.output)")
            controller.signal(SIGTERM)
            #expect(await controller.waitForExit(timeout: .seconds(30)) != nil)
        }

        // The postinst, with stand-ins for the commands that would change this machine.
        let stubs = work + "/stubs"
        try FileManager.default.createDirectory(atPath: stubs, withIntermediateDirectories: true)
        let log = work + "/calls.log"
        for (name, status) in [("getent", 2), ("adduser", 0), ("install", 0), ("systemctl", 0)] {
            try "#!/bin/sh\necho \"\(name) $*\" >> \(log)\nexit \(status)\n".write(toFile: stubs + "/" + name, atomically: true, encoding: .utf8)
            chmod(stubs + "/" + name, 0o755)
        }
        let (configured, configureOutput) = try await SystemProgram.run(executable: "/bin/sh", [fresh + "/var/lib/dpkg/info/plane.postinst", "configure"],
                                                                        environment: ["PATH": stubs + ":/usr/bin:/bin"])
        #expect(configured == 0, "\(configureOutput)")
        let calls = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(calls.contains("getent passwd plane"), "\(calls)")
        #expect(calls.contains("adduser --system --group --home /nonexistent --no-create-home --quiet plane"), "\(calls)")
        #expect(calls.contains("install -d -m 0750 -o root -g plane /etc/plane"), "\(calls)")
        #expect(calls.contains("install -m 0640 -o root -g plane /usr/share/plane/examples/controller.toml /etc/plane/controller.toml"), "\(calls)")
    }
}
