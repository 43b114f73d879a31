import PlaneCore

/// The per-spawn options the built-in runtimes share (a spawn's `runtime_options`):
/// `pids_limit`, the backend's own process (and thread) limit, which wins over the runtime's
/// configured default.
public enum BuiltInRuntimeOptions {
    public static let pidsLimitKey = "pids_limit"
    /// What the kernel's `pids.max` takes.
    public static let pidsLimitRange: ClosedRange<Int64> = 1...4_194_304

    /// The schema entry of `pids_limit`.
    public static let pidsLimitSchema: (String, JSONValue) = (pidsLimitKey, .object(JSONObject([
        ("type", .string("integer")), ("minimum", .integer(pidsLimitRange.lowerBound)), ("maximum", .integer(pidsLimitRange.upperBound)),
        ("description", .string("The backend's process and thread limit (wins over the drone's default).")),
    ])))

    /// The spawn's `pids_limit`, checked (nil: not given).
    public static func pidsLimit(of spec: BackendSpec, runtime: String) throws(RuntimeError) -> Int64? {
        guard let value = spec.options[pidsLimitKey] else { return nil }
        guard let limit = value.int64Value, pidsLimitRange.contains(limit) else {
            throw RuntimeError(.invalidSpec, "The \(runtime) option '\(pidsLimitKey)' must be an integer from \(pidsLimitRange.lowerBound) to \(pidsLimitRange.upperBound).")
        }
        return limit
    }
}
