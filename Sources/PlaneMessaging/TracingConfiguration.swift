import PlaneCore

/// `[tracing]` of controller.toml and drone.toml (issue 16): spans of each spawn, from the
/// schedule request through the controller and the drone to the runtime's calls, exported
/// with OpenTelemetry's OTLP over HTTP. Without the section nothing is traced, and no trace
/// context goes in NATS headers.
public struct TracingConfiguration: Sendable, Hashable {
    public enum ExportProtocol: String, Sendable, Hashable, CaseIterable {
        case httpProtobuf = "http/protobuf"
        case httpJSON = "http/json"
    }

    /// Where spans are posted, used as given (OTLP/HTTP's traces URL, such as
    /// `http://collector:4318/v1/traces`).
    public var endpoint: String
    public var exportProtocol: ExportProtocol = .httpProtobuf
    /// The `service.name` of the spans (default: `plane-controller`, `plane-drone`).
    public var serviceName: String?
    /// How long finished spans wait to be sent together.
    public var exportDelay: Duration = .seconds(5)

    public init(endpoint: String) {
        self.endpoint = endpoint
    }

    static let maxLength = 2048

    /// The section, checked (nil without it; problems are reported on `section`).
    public static func read(_ section: ConfigReader?) -> TracingConfiguration? {
        guard let section else { return nil }
        guard let endpoint = section.string("endpoint") else {
            section.problem("endpoint", "missing; the OTLP/HTTP traces URL, such as \"http://127.0.0.1:4318/v1/traces\" (remove [tracing] to trace nothing)")
            return nil
        }
        if let problem = endpoint.utf8.count > maxLength ? "longer than \(maxLength) bytes" : endpointProblem(endpoint) {
            section.problem("endpoint", problem)
            return nil
        }
        var configuration = TracingConfiguration(endpoint: endpoint)
        if let text = section.string("protocol") {
            if let value = ExportProtocol(rawValue: text) {
                configuration.exportProtocol = value
            } else {
                section.problem("protocol", "'\(text)' is not one of \(ExportProtocol.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
            }
        }
        if let name = section.string("service_name") {
            if name.isEmpty || name.utf8.count > 255 || name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                section.problem("service_name", "must be 1 to 255 printable characters")
            } else {
                configuration.serviceName = name
            }
        }
        if let milliseconds = section.int("export_delay_ms", in: 10...60_000) { configuration.exportDelay = .milliseconds(milliseconds) }
        return configuration
    }

    /// Why `endpoint` is not an http(s) URL with a host (nil: it is).
    static func endpointProblem(_ endpoint: String) -> String? {
        let lowered = endpoint.lowercased()
        guard let scheme = ["http://", "https://"].first(where: { lowered.hasPrefix($0) }) else {
            return "'\(endpoint.prefix(100))' is not an http:// or https:// URL"
        }
        let rest = endpoint.dropFirst(scheme.count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.isEmpty, !authority.contains("@") else { return "'\(endpoint.prefix(100))' has no host (or has credentials in it)" }
        guard endpoint.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            return "the URL holds spaces or characters outside printable ASCII"
        }
        return nil
    }
}
