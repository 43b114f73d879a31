import Foundation
import PlaneTestSupport

/// Times from a start call to the first HTTP 200 of `plane-test-server`, probing as fast as
/// the same loop does for every path, so the paths compare on equal terms.
struct StartLatency {
    let runs: Int

    /// One warm-up run, then `runs` measured ones. `start` starts a backend serving on the
    /// given port and returns where it listens (nil: 127.0.0.1 and that port); `stop` ends
    /// it and removes what it left, outside the timed region.
    func measure(start: (Int, Int) async throws -> (host: String, port: Int)?, stop: (Int) async throws -> Void) async throws -> [Double] {
        var samples: [Double] = []
        let clock = ContinuousClock()
        for run in 0...runs {
            let port = try TestEnvironment.freePort()
            let began = clock.now
            let target = try await start(run, port) ?? (host: "127.0.0.1", port: port)
            let probe = HTTPProbe(host: target.host, port: target.port)
            while (try? await probe.get("/"))?.status != 200 { try await Task.sleep(for: .milliseconds(2)) }
            let elapsed = clock.now - began
            try await stop(run)
            if run > 0 { samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15) }
        }
        return samples
    }
}
