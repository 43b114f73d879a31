// Benchmark behind `make bench-runtime`: time from `ContainerRuntime.start` to the first
// HTTP 200 of plane-test-server, with the Docker runtime (host networking). Prints one
// JSON line with every sample in milliseconds.
//
// usage: RuntimeBench <image> [runs]
import ContainerRuntime
import DockerRuntime
import Foundation
import Logging
import PlaneCore
import PlaneTestSupport

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: RuntimeBench <image> [runs]\n".utf8))
    exit(64)
}
let image = arguments[1]
let runs = arguments.count > 2 ? Int(arguments[2]) ?? 20 : 20
let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
let runtime = try await DockerRuntime.make(configuration: DockerRuntimeConfiguration(), droneID: .random(), logger: quiet)
var samples: [Double] = []
for _ in 0..<(runs + 1) {
    let spec = BackendSpec(backendID: .random(), droneID: "bench", image: image, port: UInt16(try TestEnvironment.freePort()),
                           network: .host(address: "127.0.0.1"), pullPolicy: .never)
    let clock = ContinuousClock()
    let start = clock.now
    let handle = try await runtime.start(spec)
    let address = handle.address!
    let probe = HTTPProbe(host: address.host, port: Int(address.port))
    while (try? probe.get("/"))?.status != 200 { try await Task.sleep(for: .milliseconds(2)) }
    let elapsed = clock.now - start
    samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
    try await runtime.stop(spec.backendID, grace: .seconds(2))
    try await runtime.remove(spec.backendID)
}
samples.removeFirst() // warm-up
let result: [String: Any] = ["runtime": "plane-docker", "samples_ms": samples]
print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
