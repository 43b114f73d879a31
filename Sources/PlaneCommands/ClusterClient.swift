import ArgumentParser
import Foundation
import Logging
import NATS
import PlaneCore
import PlaneMessaging

/// What every cluster command (`spawn`, `status`, `terminate`, ...) shares: `--nats`,
/// `--json`, the connection, and errors that say what to do, with exit codes scripts can
/// tell apart:
///
/// - 0: done;
/// - 1: the cluster answered, but not with success (no drone available, refused, unknown);
/// - 3: nobody answered (no NATS at that address, no controller or drone on the subject).
struct ClusterOptions: ParsableArguments {
    @OptionGroup var natsOptions: NATSOptions

    @Flag(name: .long, help: "Print JSON (one object per line) instead of text.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("How long to wait for an answer, in seconds.", valueName: "seconds"))
    var requestTimeout: Int = 10

    /// A connected messenger; a NATS server that cannot be reached ends the command (exit 3).
    func connect() async -> PlaneMessenger {
        do {
            var configuration = try natsOptions.clientConfiguration(name: "plane-cli")
            configuration.maxReconnectAttempts = 0
            let client = try NATSClient(configuration: configuration, logger: Logger(label: "plane.cli", factory: { _ in SwiftLogNoOpLogHandler() }))
            try await client.connect()
            return PlaneMessenger(client: client)
        } catch let error as NATSError {
            CLIError.exit("Cannot reach NATS at \(natsOptions.nats): \(error.message) Start one (nats-server -js) or pass --nats nats://host:port.", code: 3)
        } catch {
            CLIError.exit("Cannot reach NATS at \(natsOptions.nats): \(error)", code: 3)
        }
    }

    /// 1 s to a day, whatever the command line says (a timeout of `Int.max` seconds would
    /// overflow the clock's deadline).
    var timeout: Duration { .seconds(min(max(1, requestTimeout), 86_400)) }

    /// Prints `object` as one line of JSON with sorted keys.
    func printJSON(_ object: [String: Any?]) {
        let compact = object.compactMapValues { $0 }
        guard let data = try? JSONSerialization.data(withJSONObject: compact, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Ends a CLI command with a message on stderr and an exit code.
enum CLIError {
    static func exit(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        Foundation.exit(code)
    }

    /// The message and exit code for a failed request on `subject`.
    static func request(_ error: any Error, subject: String, nobody: String) -> Never {
        if let error = error as? NATSError, error.code == .noResponders || error.code == .timeout {
            exit("\(nobody) (nothing answered on \(subject)).", code: 3)
        }
        exit("The request on \(subject) failed: \(error)", code: 1)
    }
}
