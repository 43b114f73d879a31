import Foundation
import PlaneCore
import PlaneMetrics
import PlaneTestSupport
import Testing

/// The catalog is what `/metrics` can serve: every metric in it registers in one registry
/// with its type, help and labels (a name used with two help texts or types would stop the
/// process), and docs/operations.md documents each.
struct MetricCatalogTests {
    @Test func everyMetricRegistersWithItsTypeAndHelpAndIsDocumented() throws {
        let registry = PlaneMetrics()
        for metric in MetricCatalog.all {
            let labels = metric.labels.map { ($0, "x") }
            switch metric.kind {
            case .counter: registry.counter(metric, labels).increment()
            case .gauge: registry.gauge(metric, labels).record(1)
            case .histogram: registry.timer(metric, labels).recordNanoseconds(3_000_000)
            }
        }
        let text = registry.exposition()
        let samples = PrometheusSamples(text)
        let operations = try String(contentsOfFile: PythonEnvironment.packageRoot + "/docs/operations.md", encoding: .utf8)
        for metric in MetricCatalog.all {
            #expect(samples.types[metric.name] == metric.typeName, "\(metric.name)\n\(text)")
            #expect(text.contains("# HELP \(metric.name) \(metric.help)\n"), "\(metric.name)")
            #expect(operations.contains("`\(metric.name)"), "\(metric.name) is not documented in docs/operations.md")
            let suffix = metric.typeName == "histogram" ? "_count" : ""
            #expect(samples.value(metric.name + suffix, Dictionary(uniqueKeysWithValues: metric.labels.map { ($0, "x") })) == 1, "\(metric.name)")
            #expect(metric.name.hasPrefix("plane_") && (metric.typeName != "counter" || metric.name.hasSuffix("_total")), "\(metric.name)")
        }
        #expect(Set(MetricCatalog.all.map(\.name)).count == MetricCatalog.all.count)
    }

    /// The input-limit counters of the process are in every registry's exposition.
    @Test func inputLimitHitsAreWrittenAtEachScrape() {
        let registry = PlaneMetrics()
        let key = "test.limit_\(UInt32.random(in: 0...UInt32.max))"
        LimitCounters.shared.record(key)
        #expect(PrometheusSamples(registry.exposition()).value("plane_input_limit_hits_total", ["limit": key]) == 1)
        LimitCounters.shared.record(key)
        LimitCounters.shared.record(key)
        #expect(PrometheusSamples(registry.exposition()).value("plane_input_limit_hits_total", ["limit": key]) == 3)
    }
}
