import ContainerRuntime
import PlaneCore

/// Turns a `GET /containers/{id}/stats?stream=false` answer into a `ResourceSample`, as
/// spec §5.7 computes it: CPU = Δtotal_usage / Δsystem_cpu_usage × 100 (a share of the
/// whole host); memory = usage − cache (cgroup v1 `cache`, v2 `inactive_file`).
enum DockerStatsCalculator {
    static func sample(from json: JSONValue) throws(RuntimeError) -> ResourceSample {
        guard case .object(let root) = json else { throw RuntimeError(.internal, "Docker stats are not a JSON object.") }
        func number(_ object: JSONObject?, _ path: [String]) -> Double? {
            var current: JSONValue? = object.map { .object($0) }
            for key in path { current = current?.objectValue?[key] }
            if case .number(let text)? = current { return Double(text) }
            return nil
        }
        let cpu = root["cpu_stats"]?.objectValue
        let precpu = root["precpu_stats"]?.objectValue
        let memory = root["memory_stats"]?.objectValue
        var cpuPercent = 0.0
        if let total = number(cpu, ["cpu_usage", "total_usage"]), let system = number(cpu, ["system_cpu_usage"]) {
            let previousTotal = number(precpu, ["cpu_usage", "total_usage"]) ?? 0
            let previousSystem = number(precpu, ["system_cpu_usage"]) ?? 0
            let deltaSystem = system - previousSystem
            if deltaSystem > 0 { cpuPercent = max(0, (total - previousTotal) / deltaSystem * 100) }
        }
        let usage = number(memory, ["usage"]) ?? 0
        let cache = number(memory, ["stats", "cache"]) ?? number(memory, ["stats", "inactive_file"]) ?? 0
        let limit = number(memory, ["limit"]) ?? 0
        return ResourceSample(cpuPercent: cpuPercent.isFinite ? cpuPercent : 0, memoryBytes: bytes(usage - cache), memoryLimitBytes: bytes(limit))
    }

    /// A byte count from a JSON number: 0 for negative, NaN or infinite values, at most
    /// `UInt64.max` (a `Double` beyond it would trap in the conversion).
    static func bytes(_ value: Double) -> UInt64 {
        guard value.isFinite, value > 0 else { return 0 }
        return value >= 18_446_744_073_709_549_568 ? .max : UInt64(value)
    }
}
