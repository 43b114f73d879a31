import CSeccomp
import ContainerRuntime
import Foundation

/// A seccomp profile in OCI runtime-spec form (`linux.seccomp` of `config.json`): the
/// default one shipped with Plane (Docker's default allowlist for Docker's default
/// capabilities; everything else fails with EPERM) or an operator's file.
///
/// Loading resolves every syscall name with the host's libseccomp: a name libseccomp knows
/// on no architecture (a typo, or a syscall newer than the host's libseccomp) fails early
/// with that name; names of other architectures (`chown32` on x86_64) are dropped, as the
/// OCI runtimes drop them. The architectures are set to the host's.
public struct SeccompProfile: Sendable, Hashable {
    public let seccomp: OCIRuntimeSpec.Seccomp

    /// The profile shipped with Plane (`Resources/default-seccomp.json`).
    public static func standard() throws(RuntimeError) -> SeccompProfile {
        try SeccompProfile(json: Data(PackageResources.default_seccomp_json), source: "the default seccomp profile")
    }

    /// An operator's profile file (`[agent.oci] seccomp_profile`).
    public static func file(_ path: String) throws(RuntimeError) -> SeccompProfile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RuntimeError(.invalidSpec, "The seccomp profile \(path) cannot be read; check [agent.oci] seccomp_profile.")
        }
        return try SeccompProfile(json: data, source: "seccomp profile \(path)")
    }

    public init(json: Data, source: String) throws(RuntimeError) {
        var profile: OCIRuntimeSpec.Seccomp
        do { profile = try JSONDecoder().decode(OCIRuntimeSpec.Seccomp.self, from: json) } catch {
            throw RuntimeError(.invalidSpec, "\(source) is not a seccomp profile in OCI form (defaultAction, syscalls: [{names, action, args}]).", underlying: error)
        }
        let actions: Set<String> = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"]
        let operators: Set<String> = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
        guard actions.contains(profile.defaultAction) else {
            throw RuntimeError(.invalidSpec, "\(source): defaultAction '\(profile.defaultAction)' is not one of \(actions.sorted().joined(separator: ", ")).")
        }
        var syscalls: [OCIRuntimeSpec.Syscall] = []
        for var rule in profile.syscalls {
            guard actions.contains(rule.action) else {
                throw RuntimeError(.invalidSpec, "\(source): action '\(rule.action)' (for \(rule.names.prefix(3).joined(separator: ", "))) is not one of \(actions.sorted().joined(separator: ", ")).")
            }
            for argument in rule.args ?? [] where !operators.contains(argument.op) {
                throw RuntimeError(.invalidSpec, "\(source): argument operator '\(argument.op)' is not one of \(operators.sorted().joined(separator: ", ")).")
            }
            var names: [String] = []
            for name in rule.names {
                switch Self.resolve(name) {
                case .native: names.append(name)
                case .otherArchitecture: continue
                case .unknown:
                    throw RuntimeError(.invalidSpec, "\(source) names the syscall '\(name)', which this host's libseccomp does not know (a typo, or newer than libseccomp \(Self.libseccompVersion)); remove it or update libseccomp.")
                }
            }
            guard !names.isEmpty else { continue }
            rule.names = names
            syscalls.append(rule)
        }
        profile.syscalls = syscalls
        profile.architectures = Self.hostArchitectures
        seccomp = profile
    }

    enum Resolution { case native, otherArchitecture, unknown }

    /// Architectures a name is looked up in when the host's does not know it.
    static let otherArchitectures = ["x86_64", "x86", "x32", "aarch64", "arm", "riscv64", "ppc64le", "s390x"]

    static func resolve(_ name: String) -> Resolution {
        if seccomp_syscall_resolve_name(name) >= 0 { return .native }
        for architecture in otherArchitectures {
            let token = seccomp_arch_resolve_name(architecture)
            if token != 0, seccomp_syscall_resolve_name_arch(token, name) >= 0 { return .otherArchitecture }
        }
        return .unknown
    }

    /// The host's architectures in the profile's names (with the 32-bit ones its kernel runs).
    static var hostArchitectures: [String] {
        #if arch(x86_64)
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        #elseif arch(arm64)
        ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
        #else
        []
        #endif
    }

    static var libseccompVersion: String {
        guard let version = seccomp_version() else { return "?" }
        return "\(version.pointee.major).\(version.pointee.minor).\(version.pointee.micro)"
    }

    /// Whether the profile lets `name` through unconditionally.
    public func allows(_ name: String) -> Bool {
        seccomp.syscalls.contains { $0.action == "SCMP_ACT_ALLOW" && $0.args == nil && $0.names.contains(name) }
    }
}
