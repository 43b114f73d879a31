import Foundation
import NATS
import PlaneCore
import PlaneMessaging
import PlaneTestSupport
import Testing

/// `plane controller` as an operator runs it: a child process with a TOML file, serving
/// DNS and HTTP, stopping cleanly on SIGTERM.
struct ControllerProcessTests {
    @Test func runsFromATOMLFileAndStopsOnSIGTERM() async throws {
        try await withNATSServer { server in
            let directory = try TestEnvironment.temporaryDirectory("controller-process")
            let dnsPort = try TestEnvironment.freePort()
            let httpPort = try TestEnvironment.freePort()
            let path = directory + "/controller.toml"
            try """
                [nats]
                hosts = ["\(server.url)"]
                [scheduler]
                [dns]
                port = \(dnsPort)
                bind_ip = "127.0.0.1"
                soa_email = "admin@plane.test"
                zones = ["plane.test"]
                [http]
                bind_ip = "127.0.0.1"
                port = \(httpPort)
                cluster = "plane.test"
                services.hello = "plane-test-server:latest"
                """.write(toFile: path, atomically: true, encoding: .utf8)
            let child = try ChildProcess(try TestExecutables.path("plane"), arguments: ["controller", path])
            let health = try await HTTPProbe(port: httpPort).waitUntilAnswering("/healthz", within: .seconds(20))
            #expect(health.status == 200)
            let messenger = PlaneMessenger(client: try await server.connectedClient())
            try await messenger.publish(PlaneSubjects.dns("plane.test", .a), SetDnsRecord(cluster: "plane.test", kind: .a, name: "b1", value: "10.1.2.3"))
            try await messenger.client.flush()
            let dig = { try await SystemProgram.dig.run(["@127.0.0.1", "-p", "\(dnsPort)", "+time=3", "+tries=2", "+short", "A", "b1.plane.test"]) }
            var answer = ""
            for _ in 0..<40 where answer != "10.1.2.3\n" {
                answer = try await dig()
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(answer == "10.1.2.3\n")
            #expect(try await messenger.request(PlaneSubjects.schedule("plane.test"), ScheduleRequest(cluster: "plane.test", maxIdleSeconds: 30, executable: DockerExecutableConfig(image: "x")), timeout: .seconds(5)) == .noDroneAvailable)
            child.signal(SIGTERM)
            let status = await child.waitForExit(timeout: .seconds(15))
            #expect(status == 0, "\(child.output)")
            await messenger.client.close()
        }
    }
}
