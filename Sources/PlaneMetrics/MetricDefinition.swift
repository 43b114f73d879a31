/// One metric Plane exposes: its Prometheus name (`plane_` prefix, unit in the name,
/// `_total` for counters), what it measures, and its label names. `MetricCatalog` holds
/// every one; `PlaneMetricsFactory` gives a swift-metrics handler of a name its help text
/// and buckets from here, so one name always has one meaning.
public struct MetricDefinition: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case counter
        case gauge
        /// Bucket upper bounds in seconds (a swift-metrics `Timer`).
        case histogram(bucketSeconds: [Double])
    }

    public let name: String
    public let kind: Kind
    public let help: String
    public let labels: [String]

    public init(_ name: String, _ kind: Kind, labels: [String] = [], help: String) {
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = labels
    }

    /// The type word of the exposition format.
    public var typeName: String {
        switch kind {
        case .counter: "counter"
        case .gauge: "gauge"
        case .histogram: "histogram"
        }
    }
}
