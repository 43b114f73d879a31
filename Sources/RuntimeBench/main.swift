// Benchmark behind `make bench-runtime`. Prints one JSON line per invocation.
//
//   RuntimeBench docker <image> [runs] [host|isolated]       DockerRuntime.start → first 200
//   RuntimeBench oci <runc|crun> <image> <plane> [runs] [host|isolated]   OCIRuntime.start → first 200
//
// `isolated` is each runtime's default network (Docker: the drone's bridge network with
// inter-container traffic off; OCI: a network namespace per backend); `host` the opt-in.
//   RuntimeBench bundle <runc> <bundle> [runs]               hand-made `runc run -d` → first 200
//   RuntimeBench oci-config <image> <plane> <file>           the config.json the OCI runtime writes
//   RuntimeBench idle-memory <plane> <docker|oci-runc|oci-crun> <image> <count>
//
// Start latencies are medians-to-be: every sample in milliseconds, after one warm-up run.
import ContainerRuntime
import DockerRuntime
import Foundation
import Logging
import OCIRuntime
import PlaneCore
import PlaneTestSupport

let usage = """
    usage: RuntimeBench docker <image> [runs] [host|isolated]
           RuntimeBench oci <runc|crun> <image> <plane-executable> [runs] [host|isolated]
           RuntimeBench bundle <runc-binary> <bundle-directory> [runs]
           RuntimeBench oci-config <image> <plane-executable> <output-file>
           RuntimeBench idle-memory <plane-executable> <docker|oci-runc|oci-crun> <image> <count>

    """
let arguments = Array(CommandLine.arguments.dropFirst())
func runs(at index: Int) -> Int { arguments.count > index ? Int(arguments[index]) ?? 20 : 20 }
func emit(_ object: [String: Any]) throws {
    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
}
// Logs (the NATS client's, BENCH_LOG's) go to standard error; standard output is the JSON.
LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
let benchDrone = DroneID.random()
/// Silent unless `BENCH_LOG=1` (then the runtime's own log, e.g. `oci.backend_started` with
/// its duration, goes to standard error).
let quiet: Logger = ProcessInfo.processInfo.environment["BENCH_LOG"] == "1"
    ? Logger(label: "bench", factory: { StreamLogHandler.standardError(label: $0) })
    : Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })

/// `host` or `isolated` at `index` (default host).
func isolated(at index: Int) -> Bool { arguments.count > index && arguments[index] == "isolated" }

/// Starts and removes backends of `image` on `runtime`, timing each start to its first 200
/// at the address the runtime returns (the drone's plan: host networking where offered).
func startLatency(_ runtime: some ContainerRuntime, image: String, runs: Int) async throws -> [Double] {
    var specs: [Int: BackendSpec] = [:]
    let network: NetworkPlan = runtime.descriptor.capabilities.networkModes.contains(.host) ? .host(address: "127.0.0.1") : .bridge(network: nil)
    let warm = BackendSpec(backendID: .random(), droneID: benchDrone, image: image, port: 1, network: network, pullPolicy: .ifNotPresent)
    try await runtime.prepare(warm)
    return try await StartLatency(runs: runs).measure(start: { run, port in
        let spec = BackendSpec(backendID: .random(), droneID: benchDrone, image: image, port: UInt16(port),
                               network: network, pullPolicy: .never)
        specs[run] = spec
        let handle = try await runtime.start(spec)
        return handle.address.map { (host: $0.host, port: Int($0.port)) }
    }, stop: { run in
        let spec = specs[run]!
        try await runtime.stop(spec.backendID, grace: .seconds(2))
        try await runtime.remove(spec.backendID)
    })
}

do {
    switch arguments.first {
    case "docker" where arguments.count >= 2:
        var configuration = DockerRuntimeConfiguration()
        if !isolated(at: 3) { configuration.network = .host }
        let runtime = try await DockerRuntime.make(configuration: configuration, droneID: benchDrone, logger: quiet)
        try emit(["runtime": isolated(at: 3) ? "docker-isolated" : "docker", "samples_ms": try await startLatency(runtime, image: arguments[1], runs: runs(at: 2))])
    case "oci" where arguments.count >= 4:
        let state = try TestEnvironment.temporaryDirectory("bench-oci")
        defer { try? FileManager.default.removeItem(atPath: state) }
        var configuration = OCIRuntimeConfiguration(stateDirectory: state)
        configuration.runtime = arguments[1]
        configuration.shimExecutable = arguments[3]
        configuration.network = isolated(at: 5) ? .namespace : .host
        let runtime = try await OCIRuntime.make(configuration: configuration, droneID: benchDrone, logger: quiet)
        try emit(["runtime": "oci-\(arguments[1])\(isolated(at: 5) ? "-isolated" : "")", "samples_ms": try await startLatency(runtime, image: arguments[2], runs: runs(at: 4))])
    case "bundle" where arguments.count >= 3:
        let root = try TestEnvironment.temporaryDirectory("bench-runc-root")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bench = HandMadeBundleBench(binary: arguments[1], bundle: arguments[2], root: root)
        try emit(["runtime": "runc-by-hand", "samples_ms": try await bench.run(StartLatency(runs: runs(at: 3)))])
    case "oci-config" where arguments.count >= 4:
        // One backend started by the OCI runtime (runc), its config.json kept.
        let state = try TestEnvironment.temporaryDirectory("bench-oci-config")
        defer { try? FileManager.default.removeItem(atPath: state) }
        var configuration = OCIRuntimeConfiguration(stateDirectory: state)
        configuration.shimExecutable = arguments[2]
        configuration.network = .host
        let runtime = try await OCIRuntime.make(configuration: configuration, droneID: benchDrone, logger: quiet)
        let spec = BackendSpec(backendID: .random(), droneID: benchDrone, image: arguments[1], port: UInt16(try TestEnvironment.freePort()),
                               network: .host(address: "127.0.0.1"), pullPolicy: .ifNotPresent)
        _ = try await runtime.start(spec)
        let copied = Result { try FileManager.default.copyItem(atPath: "\(state)/backends/\(spec.backendID.rawValue)/config.json", toPath: arguments[3]) }
        try await runtime.stop(spec.backendID, grace: .seconds(2))
        try await runtime.remove(spec.backendID)
        try copied.get()
        try emit(["config": arguments[3]])
    case "idle-memory" where arguments.count >= 5:
        guard let count = Int(arguments[4]), count > 0 else { throw BenchError("count must be a positive integer") }
        try emit(try await IdleMemoryBench(plane: arguments[1], runtime: arguments[2], image: arguments[3], count: count).run())
    default:
        FileHandle.standardError.write(Data(usage.utf8))
        exit(64)
    }
} catch {
    FileHandle.standardError.write(Data("RuntimeBench: \(error)\n".utf8))
    exit(1)
}
