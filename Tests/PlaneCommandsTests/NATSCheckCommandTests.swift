import ArgumentParser
import NATS
import PlaneTestSupport
import Testing
@testable import PlaneCommands

struct NATSCheckCommandTests {
    @Test func natsOptionHonoursPortAndCredentials() throws {
        let command = try NATSCheckCommand.parse(["--nats", "nats://tok@127.0.0.1:4333,nats://u:p@10.0.0.1"])
        let config = try command.natsOptions.clientConfiguration(name: "t")
        #expect(config.servers.map(\.port) == [4333, 4222])
        #expect(config.servers[0].user == "tok" && config.servers[0].password == nil)
        #expect(config.servers[1].user == "u" && config.servers[1].password == "p")
        #expect(config.tls == nil)
        let tls = try NATSCheckCommand.parse(["--nats", "nats://h:1", "--nats-ca", "/ca.pem"]).natsOptions.clientConfiguration(name: "t")
        #expect(tls.tls?.caFile == "/ca.pem")
        #expect(throws: (any Error).self) { try NATSCheckCommand.parse(["--nats", "http://h"]).natsOptions.clientConfiguration(name: "t") }
    }

    @Test func exitCodesTellWhatIsWrong() async throws {
        // No server: exit 1.
        let port = try TestEnvironment.freePort()
        await #expect(throws: ExitCode(1)) { try await NATSCheckCommand.parse(["--nats", "nats://127.0.0.1:\(port)"]).run() }
        // Server without JetStream: exit 2.
        var options = NATSServerProcess.Options()
        options.jetStream = false
        try await withNATSServer(options) { server in
            await #expect(throws: ExitCode(2)) { try await NATSCheckCommand.parse(["--nats", server.url]).run() }
        }
        // Server with JetStream: success.
        try await withNATSServer { server in
            try await NATSCheckCommand.parse(["--nats", server.url]).run()
        }
    }
}
