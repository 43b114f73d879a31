@testable import DockerRuntime
import PlaneCore

/// What dockerd relays to the drone, much of it a backend's own output: the multiplexed
/// log stream (with and without timestamps) in any chunking, the event and progress JSON
/// lines, stats.
enum DockerFuzzTarget {
    static let streams = FuzzTarget("docker-stream", "DockerLogDemultiplexer and LineSplitter in any chunking, events and stats JSON: lines never longer than LogLine.maximumLength.") { raw in
        var input = FuzzInput(raw)
        let sizes = [input.byte(), input.byte()]
        let timestamps = input.byte() & 1 == 1
        let payload = input.rest()
        var demultiplexer = DockerLogDemultiplexer(timestamps: timestamps)
        var splitter = LineSplitter()
        for piece in FuzzInput.pieces(payload, sizes: sizes, maxPiece: 512) {
            for line in demultiplexer.feed(piece) {
                FuzzTarget.require(line.text.utf8.count <= 3 * 16_384, "a log line of \(line.text.utf8.count) bytes")
            }
            for record in splitter.feed(piece) {
                if let event = try? JSONParser.parse(record).objectValue { _ = DockerEventHub.runtimeEvent(event) }
            }
        }
        _ = demultiplexer.finish()
        if let json = try? JSONParser.parse(payload) { _ = try? DockerStatsCalculator.sample(from: json) }
    }
}
