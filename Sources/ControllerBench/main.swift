import Foundation
import Logging
import NATS
import PlaneController
import PlaneCore
import PlaneDNS
import PlaneMessaging
import PlaneTestSupport
import Synchronization

// Benchmarks of the controller, driven by scripts/bench-controller.sh:
//   ControllerBench schedule <requests> <in-flight> [drones] [fleet]
//       schedule decisions/s with fake drones (default 10); `fleet`: the drones advertise
//       runtime classes, capacity and an options schema, and every request asks for a class,
//       memory and an option (issue 14's filters on every decision)
//   ControllerBench dns <port> <records>              serve plane.test until killed (for dnsperf)

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: ControllerBench schedule <requests> <in-flight> | dns <port> <records>\n".utf8))
    exit(64)
}

switch arguments[1] {
case "dns":
    let port = Int(arguments[2])!
    let records = Int(arguments[3])!
    let zone = try DNSName("plane.test")
    let store = DNSRecordStore(zones: [zone], ttl: .seconds(24 * 3600))
    for index in 0..<records {
        try store.setAddress("10.\(index / 65536 % 256).\(index / 256 % 256).\(index % 256)", name: "b\(index)", zone: zone)
    }
    let authority = DNSAuthority(nameServer: try DNSName("ns.plane.test"), mailbox: try DNSName("admin.plane.test"))
    var configuration = DNSServerConfiguration(bindHost: "127.0.0.1", port: port)
    // dnsperf asks from one address: response rate limiting stays on (its check is on the
    // measured path) with a rate dnsperf never reaches.
    configuration.rateLimit.responsesPerSecond = DNSResponseRateLimit.responsesPerSecondRange.upperBound
    let server = DNSServer(configuration: configuration,
                           responder: DNSResponder(store: store, authority: authority), logger: Logger(label: "bench.dns"))
    try await server.start()
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    while true { try await Task.sleep(for: .seconds(3600)) }

case "schedule":
    try await ScheduleBench.run(total: Int(arguments[2])!, inFlight: Int(arguments[3])!, drones: arguments.count > 4 ? Int(arguments[4])! : 10,
                                fleet: arguments.count > 5 && arguments[5] == "fleet")

default:
    FileHandle.standardError.write(Data("unknown mode \(arguments[1])\n".utf8))
    exit(64)
}

/// Schedule decisions per second: one controller, ten drones answering `true` at once,
/// `inFlight` requests outstanding at a time.
enum ScheduleBench {
    static func run(total: Int, inFlight: Int, drones droneCount: Int, fleet: Bool) async throws {
        var logger = Logger(label: "bench.controller")
        logger.logLevel = .error
        let nats = try await NATSServerProcess.start()
        let controllerClient = try await nats.connectedClient()
        var configuration = ControllerConfiguration(nats: nats.clientConfiguration(), scheduler: SchedulerConfiguration())
        configuration.scheduler?.spawnTimeout = .seconds(5)
        let controller = Controller(configuration: configuration, client: controllerClient, logger: logger)
        try await controller.start()
        let serving = Task { try? await controller.run() }
        // Ten drones on their own connection, answering `true` at once.
        let droneClient = try await nats.connectedClient()
        let drones = PlaneMessenger(client: droneClient)
        var droneTasks: [Task<Void, Never>] = []
        let schema = JSONValue.object(JSONObject([("type", .string("object")), ("additionalProperties", .bool(false)), ("properties", .object(JSONObject([
            ("pids_limit", .object(JSONObject([("type", .string("integer")), ("minimum", .integer(1)), ("maximum", .integer(4_194_304))]))),
        ])))]))
        var statuses: [DroneStatusMessage] = []
        for index in 0..<droneCount {
            let id = DroneID.random()
            let spawns = try await drones.subscribe(PlaneSubjects.spawn(id))
            droneTasks.append(Task { for await delivery in spawns { _ = try? await delivery.respond(true) } })
            var status = DroneStatusMessage(droneID: id, cluster: "bench.test", droneVersion: "bench")
            if fleet {
                // Four classes over the drones, half of them also "fast"; all with room.
                status.runtime = index % 3 == 0 ? "docker" : "oci"
                status.runtimeClasses = [try FleetLabel("class-\(index % 4)")] + (index % 2 == 0 ? ["fast"] : [])
                status.capabilities = ["network_bridge", "stats", "options"]
                status.optionsSchema = schema
                status.capacity = DroneCapacity(memoryBytes: 64 << 30, memoryFreeBytes: 64 << 30, cpus: 16, backendSlots: 1_000_000, backendSlotsFree: 1_000_000)
            }
            statuses.append(status)
            try await drones.publish(PlaneSubjects.droneStatus(id), status)
        }
        // Heartbeats go on as drones send them, so none times out during a long run.
        let heartbeats = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                for status in statuses { try? await drones.publish(PlaneSubjects.droneStatus(status.droneID), status) }
            }
        }
        try await droneClient.flush()
        try await Task.sleep(for: .milliseconds(300))
        let requester = PlaneMessenger(client: try await nats.connectedClient())
        var executable = DockerExecutableConfig(image: "bench")
        if fleet { executable.resourceLimits.memoryLimitBytes = 256 << 20 }
        let request = fleet
            ? ScheduleRequest(cluster: "bench.test", maxIdleSeconds: 30, executable: executable, runtimeClass: "class-1",
                              runtimeOptions: JSONObject([("pids_limit", .integer(256))]))
            : ScheduleRequest(cluster: "bench.test", maxIdleSeconds: 30, executable: executable)
        // Warm-up.
        for _ in 0..<50 { _ = try await requester.request(PlaneSubjects.schedule("bench.test"), request, timeout: .seconds(10)) }
        let counters = Counters()
        let started = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<inFlight {
                group.addTask {
                    while counters.next.withLock({ n in defer { n += 1 }; return n }) < total {
                        let reply = try? await requester.request(PlaneSubjects.schedule("bench.test"), request, timeout: .seconds(30))
                        if case .scheduled = reply {} else { counters.failures.withLock { $0 += 1 } }
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("{\"requests\":\(total),\"in_flight\":\(inFlight),\"drones\":\(droneCount),\"fleet\":\(fleet),\"seconds\":\(seconds),\"per_second\":\(Double(total) / seconds),\"failures\":\(counters.failures.withLock { $0 })}")
        heartbeats.cancel()
        serving.cancel()
        droneTasks.forEach { $0.cancel() }
        await controller.stop()
        await requester.client.close()
        await droneClient.close()
        await controllerClient.close()
        await nats.shutdown()
    }
}

final class Counters: Sendable {
    let next = Mutex(0)
    let failures = Mutex(0)
}
