import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Synchronization
import Testing

/// `logs.controller` and `logs.drone.{id}` (spec §3.16) from real processes: `plane
/// controller` and `plane drone` (process plugin) on nats-server publish their log events
/// as v0.3.10's `LogMessage`s, each on its own subject, at `[log_forwarding] level`.
struct ComponentLogTests {
    final class Received: Sendable {
        let items = Mutex<[(subject: String, message: LogMessage)]>([])
    }

    @Test(.timeLimit(.minutes(3))) func controllerAndDronePublishTheirLogs() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let messenger = PlaneMessenger(client: client)
            let subscription = try await messenger.subscribe(SubjectPattern<LogMessage, NullReply>("logs.>"))
            let received = Received()
            let reader = Task {
                for await delivery in subscription {
                    guard case .success(let message) = delivery.message else { continue }
                    received.items.withLock { $0.append((delivery.subject, message)) }
                }
            }
            defer { reader.cancel() }
            let directory = try TestEnvironment.temporaryDirectory("component-logs")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try "[nats]\nhosts = [\"\(server.url)\"]\n[scheduler]\n".write(toFile: directory + "/controller.toml", atomically: true, encoding: .utf8)
            let plane = try TestExecutables.path("plane")
            let controller = try ChildProcess(plane, arguments: ["controller", directory + "/controller.toml"])
            let drone = DroneID.random()
            let config = try DroneConfigFile.write(in: directory, drone: drone.rawValue, nats: server.url, ports: "25600-25699", extra: """
                runtime = "process"
                runtimes_dir = "\(PythonEnvironment.packageRoot)/runtimes"
                [log_forwarding]
                level = "debug"
                """)
            let droneProcess = try ChildProcess(plane, arguments: ["drone", config])
            func from(_ component: LogMessage.Component) -> [(subject: String, message: LogMessage)] {
                received.items.withLock { $0.filter { $0.message.component == component } }
            }
            #expect(try await eventually(timeout: .seconds(60)) { !from(.controller).isEmpty && from(.drone(drone)).contains { $0.message.severity == .debug } },
                    "\(controller.output.suffix(1500))\n\(droneProcess.output.suffix(1500))")
            // Each on its own subject, with the event's name and fields; the controller at
            // its default level (info) sends no debug events.
            #expect(from(.controller).allSatisfy { $0.subject == "logs.controller" && $0.message.severity != .debug && $0.message.severity != .trace })
            #expect(from(.drone(drone)).allSatisfy { $0.subject == "logs.drone.\(drone)" })
            let event = try #require(from(.drone(drone)).first?.message)
            #expect(event.target.hasPrefix("plane.") && event.name.hasPrefix("event ") && event.fields["message"]?.stringValue?.isEmpty == false)
            // The NATS client's own events never go out (they would log again).
            #expect(received.items.withLock { $0.allSatisfy { !$0.message.target.hasPrefix("plane.nats") } })
            droneProcess.signal(SIGTERM)
            controller.signal(SIGTERM)
            #expect(await droneProcess.waitForExit(timeout: .seconds(30)) != nil)
            #expect(await controller.waitForExit(timeout: .seconds(30)) != nil)
        }
    }
}
