import CLinux
import CSeccomp
import Foundation
import ProcessSupervision

/// The backend's first moments, in the process that becomes the backend: its own process
/// group, its cgroup, rlimits, the seccomp filter (with no_new_privs), then `execve` of the
/// executable. Anything that fails is written to `launch-error` and ends the process with
/// status 127, before the backend's code runs.
enum ProcessLauncher {
    /// Syscalls the filter answers with EPERM: mounting, namespaces, keyrings, tracing,
    /// loading kernels and modules, and other host-wide operations a backend has no use for.
    static let deniedSyscalls = [
        "mount", "umount2", "pivot_root", "unshare", "setns", "keyctl", "add_key", "request_key", "ptrace", "process_vm_readv",
        "process_vm_writev", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
        "perf_event_open", "swapon", "swapoff", "reboot", "acct", "open_by_handle_at", "name_to_handle_at", "userfaultfd",
        "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl", "lookup_dcookie", "fanotify_init",
        "iopl", "ioperm", "vhangup", "fsopen", "fsmount", "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr",
    ]

    /// The namespace flags of `clone` the filter refuses (EPERM), as Docker's profile does.
    static let namespaceFlags: [UInt64] = [0x0002_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000, 0x0200_0000]

    static func main(directory: ProcessBackendDirectory) -> Never {
        guard let record = directory.read(ProcessBackendRecord.self, directory.recordFile) else { fail(directory, "cannot read \(directory.recordFile)") }
        setpgid(0, 0)
        CgroupLayout.join(record.cgroupDirectories)
        var limit = rlimit(rlim_cur: 0, rlim_max: 0)
        setrlimit(Int32(RLIMIT_CORE.rawValue), &limit)
        if let seconds = record.cpuTimeLimitSeconds {
            limit = rlimit(rlim_cur: rlim_t(seconds), rlim_max: rlim_t(seconds))
            guard setrlimit(Int32(RLIMIT_CPU.rawValue), &limit) == 0 else { fail(directory, "setrlimit(RLIMIT_CPU): \(String(cString: strerror(errno)))") }
        }
        if let files = record.openFilesLimit {
            limit = rlimit(rlim_cur: rlim_t(files), rlim_max: rlim_t(files))
            guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { fail(directory, "setrlimit(RLIMIT_NOFILE): \(String(cString: strerror(errno)))") }
        }
        if let problem = installSeccompFilter() { fail(directory, problem) }
        let arguments: [UnsafeMutablePointer<CChar>?] = [strdup(record.executable), nil]
        let environment: [UnsafeMutablePointer<CChar>?] = record.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        execve(record.executable, arguments, environment)
        fail(directory, "cannot execute \(record.executable): \(String(cString: strerror(errno)))")
    }

    /// Loads the filter into this process (kept across `execve`); nil when it worked.
    static func installSeccompFilter() -> String? {
        let allow: UInt32 = 0x7fff_0000
        let deny: UInt32 = 0x0005_0000 | UInt32(EPERM)
        guard let filter = seccomp_init(allow) else { return "seccomp_init failed" }
        defer { seccomp_release(filter) }
        for name in deniedSyscalls {
            let number = seccomp_syscall_resolve_name(name)
            guard number != __NR_SCMP_ERROR else { continue }  // not a syscall on this architecture
            let result = seccomp_rule_add_array(filter, deny, number, 0, nil)
            guard result == 0 else { return "seccomp rule for \(name): \(String(cString: strerror(-result)))" }
        }
        // clone with any namespace flag: EPERM; clone3 (whose flags a filter cannot see):
        // ENOSYS, so that the C library falls back to clone.
        let clone = seccomp_syscall_resolve_name("clone")
        for flag in namespaceFlags {
            var comparison = scmp_arg_cmp(arg: 0, op: SCMP_CMP_MASKED_EQ, datum_a: flag, datum_b: flag)
            let result = seccomp_rule_add_array(filter, deny, clone, 1, &comparison)
            guard result == 0 else { return "seccomp rule for clone: \(String(cString: strerror(-result)))" }
        }
        let clone3 = seccomp_syscall_resolve_name("clone3")
        if clone3 != __NR_SCMP_ERROR {
            let result = seccomp_rule_add_array(filter, 0x0005_0000 | UInt32(ENOSYS), clone3, 0, nil)
            guard result == 0 else { return "seccomp rule for clone3: \(String(cString: strerror(-result)))" }
        }
        let loaded = seccomp_load(filter)
        return loaded == 0 ? nil : "seccomp_load: \(String(cString: strerror(-loaded)))"
    }

    static func fail(_ directory: ProcessBackendDirectory, _ message: String) -> Never {
        try? message.write(toFile: directory.launchErrorFile, atomically: true, encoding: .utf8)
        FileHandle.standardError.write(Data("plane-runtime-process launch: \(message)\n".utf8))
        _exit(127)
    }
}
