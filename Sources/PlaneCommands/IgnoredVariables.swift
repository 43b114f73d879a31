import Logging

extension [String] {
    /// One warning naming the `PLANE_*` environment variables that name no configuration
    /// key (names only: values may be secrets).
    func logOnce(to logger: Logger) {
        guard !isEmpty else { return }
        logger.warning("config.environment_ignored", metadata: [
            "plane.variables": "\(joined(separator: ", "))",
            "plane.hint": "PLANE_* variables that name no configuration key are ignored (docs/configuration.md, \"Environment overrides\")",
        ])
    }
}
