/// Bounds on what one spawn may ask a drone to store and pass on (`[limits]` in
/// `controller.toml` and `drone.toml`). The controller checks them before it schedules (the
/// client gets the reason), the drone again before it accepts (it answers `false`).
public struct SpawnLimits: Sendable, Hashable {
    /// `limits.max_env_bytes`: the environment's names and values together.
    public var maxEnvBytes: Int
    /// `limits.max_metadata_bytes`: the metadata's keys and values together.
    public var maxMetadataBytes: Int

    public init(maxEnvBytes: Int = 64 << 10, maxMetadataBytes: Int = 16 << 10) {
        self.maxEnvBytes = maxEnvBytes
        self.maxMetadataBytes = maxMetadataBytes
    }

    public static let maxEnvBytesKey = "limits.max_env_bytes"
    public static let maxMetadataBytesKey = "limits.max_metadata_bytes"
    /// The longest image reference (a fixed bound: registries refuse much shorter ones).
    public static let maxImageBytes = 4096

    /// Checks what a spawn asks for: `check(image:env:metadata:)` and the resource limits'
    /// ranges (`ResourceLimits.check`).
    public func check(_ executable: DockerExecutableConfig, metadata: [String: String]) throws(PlaneCoreError) {
        try check(image: executable.image, env: executable.env, metadata: metadata)
        try executable.resourceLimits.check()
    }

    /// Checks a spawn's image, environment and metadata: sizes within the limits, and
    /// environment names a process can receive (not empty, no `=`, no NUL; values without NUL).
    public func check(image: String, env: [String: String], metadata: [String: String]) throws(PlaneCoreError) {
        guard image.utf8.count <= Self.maxImageBytes else {
            throw PlaneCoreError(.invalidMessage, "The image reference has \(image.utf8.count) bytes; at most \(Self.maxImageBytes) are accepted.", field: "executable.image")
        }
        var envBytes = 0
        for (name, value) in env {
            guard !name.isEmpty, !name.utf8.contains(UInt8(ascii: "=")), !name.utf8.contains(0) else {
                throw PlaneCoreError(.invalidMessage, "The environment variable name \(name.quotedForError) is not usable: a name must be non-empty and hold neither '=' nor NUL.",
                                     field: "executable.env")
            }
            guard !value.utf8.contains(0) else {
                throw PlaneCoreError(.invalidMessage, "The environment variable \(name.quotedForError) has a NUL character in its value.", field: "executable.env")
            }
            envBytes += name.utf8.count + value.utf8.count
        }
        guard envBytes <= maxEnvBytes else {
            throw PlaneCoreError(.limitExceeded, "The environment has \(envBytes) bytes of names and values; the limit is \(maxEnvBytes) (\(Self.maxEnvBytesKey)).",
                                 field: "executable.env", limit: Self.maxEnvBytesKey)
        }
        var metadataBytes = 0
        for (key, value) in metadata { metadataBytes += key.utf8.count + value.utf8.count }
        guard metadataBytes <= maxMetadataBytes else {
            throw PlaneCoreError(.limitExceeded, "The metadata has \(metadataBytes) bytes of keys and values; the limit is \(maxMetadataBytes) (\(Self.maxMetadataBytesKey)).",
                                 field: "metadata", limit: Self.maxMetadataBytesKey)
        }
    }
}

extension ResourceLimits {
    /// The ranges a runtime can apply: `cpu_period` 1 s (the kernel's CFS period is 1 ms to
    /// 1 s, and the wire counts whole seconds), a quota of at least 1 ms, at least 6 MiB of
    /// memory, a CPU time of 1 s to 2^63-1 s. Any value a client sends is either in range or
    /// a named error; nothing overflows further on.
    public func check() throws(PlaneCoreError) {
        if let period = cpuPeriod, period.seconds != 1 {
            throw PlaneCoreError(.invalidMessage, "cpu_period is \(period.seconds) s; it is in whole seconds on the wire and the kernel takes 1 ms to 1 s, so only 1 is possible (leave it out for 100 ms).",
                                 field: "executable.resource_limits.cpu_period")
        }
        if let percent = cpuPeriodPercent {
            // The period is 1 s or the default 100 ms; the quota must be at least 1 ms.
            let periodMicroseconds: Int = cpuPeriod == nil ? 100_000 : 1_000_000
            guard periodMicroseconds * Int(percent) / 100 >= 1_000 else {
                throw PlaneCoreError(.invalidMessage, "cpu_period_percent \(percent) leaves a CPU quota under 1 ms, the kernel's minimum; use 1 or more.",
                                     field: "executable.resource_limits.cpu_period_percent")
            }
        }
        if let limit = cpuTimeLimit, limit.seconds == 0 || limit.seconds > UInt64(Int64.max) {
            throw PlaneCoreError(.invalidMessage, "cpu_time_limit is \(limit.seconds) s; use 1 to \(Int64.max) seconds, or leave it out for no limit.",
                                 field: "executable.resource_limits.cpu_time_limit")
        }
        if let memory = memoryLimitBytes, memory < Self.minimumMemoryBytes {
            throw PlaneCoreError(.invalidMessage, "memory_limit_bytes is \(memory); a backend needs at least \(Self.minimumMemoryBytes) bytes (6 MiB).",
                                 field: "executable.resource_limits.memory_limit_bytes")
        }
    }

    /// The smallest memory limit a container can start with (Docker's and runc's floor).
    public static let minimumMemoryBytes: Int64 = 6 << 20
}
