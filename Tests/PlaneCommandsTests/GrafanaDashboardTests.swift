import Foundation
import PlaneACME
import PlaneController
import PlaneCore
import PlaneMetrics
import PlaneProxy
import PlaneTestSupport
import Testing

/// docs/grafana-dashboard.json asks only for metrics that exist: every name in its queries
/// is one of `MetricCatalog` (which the controller and the drone serve on `/metrics`) and
/// documented in docs/operations.md, so a renamed metric cannot leave an empty panel behind.
struct GrafanaDashboardTests {
    @Test func everyQueriedMetricIsServedAndDocumented() throws {
        let root = PythonEnvironment.packageRoot
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/docs/grafana-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(expressions.count >= 20)
        var names = Set<String>()
        for expression in expressions {
            for match in expression.matches(of: /plane_[a-z_]+/) {
                var name = String(match.output)
                for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && name.hasPrefix("plane_") && !name.hasSuffix("_total_count") {
                    name = String(name.dropLast(suffix.count))
                }
                names.insert(name)
            }
        }
        let served = Set(MetricCatalog.all.map(\.name))
        let operations = try String(contentsOfFile: root + "/docs/operations.md", encoding: .utf8)
        for name in names.sorted() {
            let documented = operations.contains("`\(name)")
            #expect(documented, "\(name) is not documented in docs/operations.md")
            #expect(served.contains(name), "\(name) is not in MetricCatalog (served by a /metrics)")
        }
        #expect(names.count >= 18, "\(names.sorted())")
    }
}
