import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on a file, held across a few steps that must not interleave with
/// the same steps of another process on the host (e.g. two drones starting together that
/// each check for a packet filter rule and add it when missing).
///
/// Acquiring waits without blocking a thread (a non-blocking attempt every 10 ms) up to a
/// deadline; the kernel lets go of the lock when the holder's descriptor closes, a crash
/// included, so a dead holder never keeps it.
struct HostFileLock: ~Copyable {
    private let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }

    /// Takes the lock of `path` (created 0600, never through a symbolic link), or returns
    /// nil when the file cannot be opened (no write access to its directory) or another
    /// holder keeps it past `timeout`; the caller then goes on without it and says so.
    static func acquire(_ path: String, timeout: Duration = .seconds(30)) async -> HostFileLock? {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { return nil }
        let deadline = ContinuousClock.now + timeout
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, ContinuousClock.now < deadline else {
                close(descriptor)
                return nil
            }
            do { try await Task.sleep(for: .milliseconds(10)) } catch {
                close(descriptor)
                return nil
            }
        }
        return HostFileLock(descriptor: descriptor)
    }

    deinit { close(descriptor) }
}
