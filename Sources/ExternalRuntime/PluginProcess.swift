import Foundation
import ProcessSupervision
import Synchronization

/// A plugin's process, started by the drone: whether it still runs, and how it ended. A
/// thread of its own waits for the exit (reaping it) and calls `onExit`, so nothing polls.
final class PluginProcess: Sendable {
    let pid: pid_t
    private let status = Mutex<Int32?>(nil)

    init(pid: pid_t, onExit: @escaping @Sendable () -> Void) {
        self.pid = pid
        Thread.detachNewThread { [self] in
            let ended = ProcessSpawner.wait(for: pid) ?? -1
            self.status.withLock { $0 = ended }
            onExit()
        }
    }

    var isRunning: Bool { status.withLock { $0 == nil } }

    /// "exit status 1", "signal 9".
    var exitDescription: String {
        guard let raw = status.withLock({ $0 }) else { return "still running" }
        return raw == -1 ? "exit status unknown" : ProcessSpawner.describe(status: raw)
    }
}
