import ArgumentParser
import Foundation
import NATS
import PlaneCore
import PlaneMessaging

/// `plane logs <backend> [--follow]`: the backend's recent output from the drone running it
/// (`backend.{id}.log.history`, our addition), then with `--follow` the lines it publishes
/// on `backend.{id}.log` until interrupted.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a running backend's output (stdout and stderr).",
        discussion: "Exit status: 0 printed, 3 no drone runs that backend (or no NATS)."
    )

    @Argument(help: "The backend id.") var backend: String
    @Flag(name: [.short, .long], help: "Keep printing new lines until interrupted.") var follow = false
    @Option(name: [.short, .long], help: "How many of the newest lines to print first.") var lines = 1000
    @OptionGroup var options: ClusterOptions

    func run() async throws {
        let backendID: BackendID
        do { backendID = try BackendID(backend) } catch { throw ValidationError(error.message) }
        let messenger = await options.connect()
        // Subscribed before asking for the history, so no line falls between the two.
        let live = follow ? try? await messenger.subscribe(SubjectPattern<DroneLogMessage, NullReply>(PlaneSubjects.backendLog(backendID).subject)) : nil
        let subject = PlaneSubjects.backendLogHistory(backendID)
        let history: [DroneLogMessage]
        do {
            history = try await messenger.request(subject, BackendLogHistoryRequest(backendID: backendID, lines: max(1, lines)), timeout: options.timeout)
        } catch {
            CLIError.request(error, subject: subject.subject, nobody: "No drone runs backend \(backendID) (it is not Starting or Ready); `plane status \(backendID)` shows its state")
        }
        for line in history { emit(line) }
        guard let live else {
            await messenger.client.close()
            return
        }
        for await delivery in live {
            if case .success(let line) = delivery.message { emit(line) }
        }
    }

    /// One line: its text without the wire's time prefix and newline (the time is a field
    /// of its own with --json).
    func emit(_ message: DroneLogMessage) {
        let (time, text) = message.line
        if options.json {
            var object: [String: Any] = ["backend_id": message.backendID.rawValue, "stream": message.kind == .stdout ? "stdout" : "stderr", "text": text]
            if let time { object["time"] = time.rfc3339 }
            options.printJSON(object)
        } else if message.kind == .stderr {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        } else {
            print(text)
        }
        fflush(nil)
    }
}
