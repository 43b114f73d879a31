import ArgumentParser
import Foundation
import NATS
import PlaneCore
import PlaneMessaging

/// `plane status [backend] [--follow]`: the state history from the `backend_status` stream,
/// one line per change (`{backend}\t{state}\t{time}`, spec §8); exits once the history is
/// printed unless `--follow` (v0.3.10 never exited).
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the state changes of one backend, or of all, from the cluster's history.",
        discussion: "Exit status: 0 printed, 1 no history for that backend, 3 no NATS or no backend_status stream (no controller ever ran)."
    )

    @Argument(help: "A backend id; all backends if omitted.") var backend: String?
    @Flag(name: .long, help: "Keep printing new changes until interrupted.") var follow = false
    @OptionGroup var options: ClusterOptions

    func run() async throws {
        var backendID: BackendID?
        do {
            if let backend { backendID = try BackendID(backend) }
        } catch {
            throw ValidationError(error.message)
        }
        let messenger = await options.connect()
        let history: BackendStateHistory
        do {
            history = try await messenger.backendStateHistory(of: backendID)
        } catch {
            CLIError.exit("Cannot read the backend_status stream: \(error). A controller creates it when it starts; is one running on this NATS?", code: 3)
        }
        var printed = 0
        if history.initialPending > 0 || follow {
            do {
                for try await stored in history {
                    switch stored.message {
                    case .success(let message):
                        if options.json {
                            options.printJSON(["backend_id": message.backend.rawValue, "state": message.state.rawValue, "time": message.time.rfc3339,
                                               "cluster": message.cluster?.rawValue])
                        } else {
                            print("\(message.backend)\t\(message.state.rawValue)\t\(message.time.displayString)")
                        }
                        printed += 1
                    case .failure(let error):
                        FileHandle.standardError.write(Data("warning: stored change \(stored.streamSequence) is not a state message: \(error.message)\n".utf8))
                    }
                    fflush(nil)
                    if !follow && stored.pending == 0 { break }
                }
            } catch {
                CLIError.exit("Reading the backend_status stream failed: \(error)", code: 3)
            }
        }
        history.stop()
        await messenger.client.close()
        if printed == 0, let backendID {
            CLIError.exit("No state recorded for backend \(backendID) (unknown, or its history has expired).", code: 1)
        }
    }
}
