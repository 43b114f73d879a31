import CLinux
import Foundation
import ProcessSupervision
import Synchronization

/// A plugin's process, started by the drone: whether it still runs, and how it ended (it is
/// reaped by the first look after its end).
final class PluginProcess: Sendable {
    let pid: pid_t
    private let status = Mutex<Int32?>(nil)

    init(pid: pid_t) { self.pid = pid }

    var isRunning: Bool {
        status.withLock { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            let result = waitpid(pid, &raw, WNOHANG)
            if result == pid { status = raw } else if result == -1 { status = -1 }
            return status == nil
        }
    }

    /// "exit status 1", "signal 9".
    var exitDescription: String {
        guard let raw = status.withLock({ $0 }) else { return "still running" }
        return raw == -1 ? "exit status unknown" : ProcessSpawner.describe(status: raw)
    }
}
