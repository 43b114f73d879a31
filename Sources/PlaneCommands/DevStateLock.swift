import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `plane dev`'s hold on its state directory: an exclusive `flock` on `{state}/dev.lock`,
/// taken at start and held for the life of the process (the kernel lets go of it when the
/// process ends, SIGKILL included), so two `plane dev` never share a store. The file holds
/// the owner's pid, for the refusal's message.
final class DevStateLock: Sendable {
    let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }

    static func acquire(stateDirectory: String) throws -> DevStateLock {
        let path = stateDirectory + "/dev.lock"
        // Close-on-exec: a child (nats-server) must not inherit the lock and keep it.
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw DevError("cannot open \(path) (errno \(errno)); check the permissions of --state-dir") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let owner = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(descriptor)
            throw DevError("another plane dev\(owner.isEmpty ? "" : " (pid \(owner))") uses \(stateDirectory); stop it first, or give this one its own --state-dir")
        }
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(descriptor, 0) == 0 { _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) } }
        return DevStateLock(descriptor: descriptor)
    }
}
