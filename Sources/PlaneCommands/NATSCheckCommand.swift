import ArgumentParser
import Logging
import NATS

/// `plane nats-check`: connects to NATS as Plane would and reports what it found, so an
/// operator can tell a wrong address, wrong credentials and missing JetStream apart.
struct NATSCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nats-check",
        abstract: "Check that the NATS server is reachable, accepts the credentials and has JetStream."
    )

    @OptionGroup var natsOptions: NATSOptions

    func run() async throws {
        let config = try natsOptions.clientConfiguration(name: "plane-nats-check")
        let client = try NATSClient(configuration: config, logger: Logger(label: "plane.cli", factory: { _ in SwiftLogNoOpLogHandler() }))
        do {
            let start = ContinuousClock.now
            try await client.connect()
            try await client.flush()
            let roundTrip = ContinuousClock.now - start
            let info = client.serverInfo
            print("Connected to \(client.connectedServer?.description ?? "?") (nats-server \(info?.version ?? "?"), max payload \(info?.maxPayload ?? 0) bytes) in \(roundTrip.formatted(.units(allowed: [.milliseconds], fractionalPart: .show(length: 1)))).")
            do {
                _ = try await JetStream(client: client).streamInfo("backend_status")
                print("JetStream: available.")
            } catch let error as NATSError {
                print("JetStream: NOT available: \(error.message)")
                await client.close()
                throw ExitCode(2)
            }
            await client.close()
        } catch let error as NATSError {
            await client.close()
            print("error: \(error.message)")
            throw ExitCode(1)
        }
    }
}
