import CSeccomp
import ContainerRuntime
import Foundation

/// A seccomp profile compiled to the BPF program the kernel runs
/// (`seccomp(SECCOMP_SET_MODE_FILTER)`), built with the host's libseccomp the way the OCI
/// runtimes build it from `linux.seccomp`: the default action, the profile's architectures,
/// then one rule per syscall name (names libseccomp does not know are skipped, rules whose
/// action is the default are left out, a rule comparing the same argument twice becomes
/// one rule per comparison).
///
/// crun compiles the profile anew in every container it starts, which is a third of its
/// start time here; handed the compiled program (`run.oci.seccomp_bpf_data`) it loads that
/// instead. The drone compiles the profile once, when the runtime starts.
public struct SeccompFilter: Sendable, Hashable {
    /// The program: 8-byte `sock_filter` instructions in host byte order.
    public let program: [UInt8]

    /// The crun annotation that carries the program (base64) in place of `linux.seccomp`.
    public static let crunAnnotation = "run.oci.seccomp_bpf_data"

    public var instructionCount: Int { program.count / 8 }

    public init(compiling profile: OCIRuntimeSpec.Seccomp) throws(RuntimeError) {
        let defaultAction = try Self.action(profile.defaultAction, errno: profile.defaultErrnoRet ?? UInt32(EPERM))
        guard let context = seccomp_init(defaultAction) else {
            throw RuntimeError(.internal, "libseccomp could not start a filter (seccomp_init failed); is libseccomp2 installed?")
        }
        defer { seccomp_release(context) }
        for architecture in profile.architectures ?? [] {
            var name = architecture.lowercased()
            if name.hasPrefix("scmp_arch_") { name.removeFirst("scmp_arch_".count) }
            let token = seccomp_arch_resolve_name(name)
            guard token != 0 else { throw RuntimeError(.invalidSpec, "The seccomp profile names the architecture \(architecture), which libseccomp does not know.") }
            let result = seccomp_arch_add(context, token)
            guard result == 0 || result == -EEXIST else {
                throw RuntimeError(.internal, "libseccomp could not add the architecture \(architecture) (error \(-result)).")
            }
        }
        for rule in profile.syscalls {
            let action = try Self.action(rule.action, errno: rule.errnoRet ?? UInt32(EPERM))
            guard action != defaultAction else { continue }
            var comparisons: [scmp_arg_cmp] = []
            for argument in rule.args ?? [] {
                guard argument.index < 6 else { throw RuntimeError(.invalidSpec, "The seccomp profile compares argument \(argument.index); syscalls have six (0-5).") }
                comparisons.append(scmp_arg_cmp(arg: argument.index, op: try Self.comparison(argument.op), datum_a: argument.value, datum_b: argument.valueTwo ?? 0))
            }
            // libseccomp takes one comparison per argument in a rule; the runtimes turn a
            // rule that compares one argument twice into a rule per comparison.
            let comparesAnArgumentTwice = Set(comparisons.map(\.arg)).count < comparisons.count
            let groups = comparesAnArgumentTwice ? comparisons.map { [$0] } : [comparisons]
            for name in rule.names {
                let number = seccomp_syscall_resolve_name(name)
                guard number != __NR_SCMP_ERROR else { continue }
                for group in groups {
                    let result = group.withUnsafeBufferPointer { seccomp_rule_add_array(context, action, number, UInt32($0.count), $0.baseAddress) }
                    guard result == 0 else {
                        throw RuntimeError(.invalidSpec, "libseccomp refused the seccomp rule for \(name) (error \(-result)); check the profile's arguments for it.")
                    }
                }
            }
        }
        program = try Self.export(context)
    }

    /// The annotation value crun expects: the program in base64.
    public var base64: String { Data(program).base64EncodedString() }

    private static func export(_ context: scmp_filter_ctx) throws(RuntimeError) -> [UInt8] {
        // libseccomp 2.5 writes the program to a file descriptor; a temporary file holds
        // any size (a pipe would block past its buffer).
        guard let file = tmpfile() else { throw RuntimeError(.internal, "Cannot create a temporary file for the compiled seccomp filter (errno \(errno)).") }
        defer { fclose(file) }
        let descriptor = fileno(file)
        let result = seccomp_export_bpf(context, descriptor)
        guard result == 0 else { throw RuntimeError(.internal, "libseccomp could not export the seccomp filter (error \(-result)).") }
        let size = lseek(descriptor, 0, SEEK_END)
        guard size > 0, size % 8 == 0, lseek(descriptor, 0, SEEK_SET) == 0 else {
            throw RuntimeError(.internal, "libseccomp exported a seccomp filter of \(size) bytes, not whole instructions.")
        }
        var program = [UInt8](repeating: 0, count: Int(size))
        var offset = 0
        while offset < program.count {
            let count = program.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw RuntimeError(.internal, "Cannot read back the compiled seccomp filter (errno \(errno)).") }
            offset += count
        }
        return program
    }

    /// libseccomp's action values (`SCMP_ACT_*`, macros Swift does not import).
    static func action(_ name: String, errno: UInt32) throws(RuntimeError) -> UInt32 {
        switch name {
        case "SCMP_ACT_ALLOW": return 0x7fff_0000
        case "SCMP_ACT_ERRNO": return 0x0005_0000 | (errno & 0xffff)
        case "SCMP_ACT_TRACE": return 0x7ff0_0000 | (errno & 0xffff)
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return 0x0000_0000
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_LOG": return 0x7ffc_0000
        default: throw RuntimeError(.invalidSpec, "The seccomp action \(name) is not one libseccomp knows.")
        }
    }

    static func comparison(_ name: String) throws(RuntimeError) -> scmp_compare {
        let operators = ["SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7]
        guard let value = operators[name] else { throw RuntimeError(.invalidSpec, "The seccomp comparison \(name) is not one libseccomp knows.") }
        return scmp_compare(rawValue: UInt32(value))
    }
}
