import Foundation
import Logging
import NATS

// Benchmark of the NATS client against a running nats-server (see scripts/bench-nats.sh):
// publish throughput and request/reply round trips per second. Prints one JSON line.
//
// usage: NATSBench <nats-url> [messages] [payload-bytes] [requests]

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: NATSBench <nats-url> [messages] [payload-bytes] [requests]\n".utf8))
    exit(64)
}
let url = arguments[1]
let messages = arguments.count > 2 ? Int(arguments[2]) ?? 1_000_000 : 1_000_000
let size = arguments.count > 3 ? Int(arguments[3]) ?? 128 : 128
let requests = arguments.count > 4 ? Int(arguments[4]) ?? 20_000 : 20_000

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
let config = try NATSClientConfiguration(urls: [url], name: "plane-bench")
let publisher = try NATSClient(configuration: config, logger: quiet)
try await publisher.connect()

// Publish throughput: N messages, then a flush so the server has received all of them.
let payload = [UInt8](repeating: UInt8(ascii: "x"), count: size)
let clock = ContinuousClock()
let publishStart = clock.now
for _ in 0..<messages {
    if try publisher.publishWithoutWaiting("bench.pub", payload: payload) {
        try await publisher.publish("bench.pub", payload: [])
    }
}
try await publisher.flush(timeout: .seconds(120))
let publishElapsed = clock.now - publishStart

// Request/reply: a responder on its own connection; sequential requests.
let responder = try NATSClient(configuration: config, logger: quiet)
try await responder.connect()
let service = try await responder.subscribe(to: "bench.echo")
let serviceTask = Task {
    for await message in service {
        if let reply = message.replyTo { _ = try? responder.publishWithoutWaiting(reply, payload: message.payload.readableBytesView) }
    }
}
for _ in 0..<100 { _ = try await publisher.request("bench.echo", payload: payload) }
let requestStart = clock.now
for _ in 0..<requests { _ = try await publisher.request("bench.echo", payload: payload) }
let requestElapsed = clock.now - requestStart

// The same with 64 requests in flight at a time: the client's own cost per round trip.
let concurrency = 64
let concurrentStart = clock.now
try await withThrowingTaskGroup(of: Void.self) { group in
    for _ in 0..<concurrency {
        group.addTask {
            for _ in 0..<(requests / concurrency) { _ = try await publisher.request("bench.echo", payload: payload) }
        }
    }
    try await group.waitForAll()
}
let concurrentElapsed = clock.now - concurrentStart
serviceTask.cancel()
await responder.close()
await publisher.close()

let result: [String: Any] = [
    "client": "plane-swift",
    "messages": messages, "payload_bytes": size, "requests": requests,
    "publish_msgs_per_sec": Double(messages) / seconds(publishElapsed),
    "request_round_trips_per_sec": Double(requests) / seconds(requestElapsed),
    "concurrent_request_round_trips_per_sec": Double(requests / concurrency * concurrency) / seconds(concurrentElapsed),
    "concurrency": concurrency,
]
print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
