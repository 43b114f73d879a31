import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a certificate pair so that no reader ever sees a half-written file: each file is
/// written to a temporary file beside it, synced and renamed over the old one; the key
/// first (mode 0600), then the chain. A reader between the two renames sees a new key with
/// the old chain, which does not match, and keeps what it had (the proxy does).
public enum CertificateFileWriter {
    public static func write(_ bundle: CertificateBundle, to files: CertificateFiles) throws(ACMEError) {
        try writeAtomically(bundle.keyPEM, to: files.keyPath, mode: 0o600)
        try writeAtomically(bundle.chainPEM, to: files.certificatePath, mode: 0o644)
    }

    /// Replaces `path` with `contents` atomically (temporary file + fsync + rename + directory fsync).
    public static func writeAtomically(_ contents: String, to path: String, mode: mode_t) throws(ACMEError) {
        let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ACMEError(.storage, "Cannot create the directory \(directory) for \(path); check [cert] paths and permissions.", cause: error)
        }
        let temporary = "\(directory)/.\((path as NSString).lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw ACMEError(.storage, "Cannot create \(temporary): \(String(cString: strerror(errno))); check that the drone may write to \(directory).")
        }
        let bytes = Array(contents.utf8)
        var written = 0
        var failure: Int32 = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                break
            }
            written += n
        }
        if failure == 0, fchmod(fd, mode) != 0 { failure = errno }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        close(fd)
        if failure == 0, rename(temporary, path) != 0 { failure = errno }
        if failure != 0 {
            unlink(temporary)
            throw ACMEError(.storage, "Cannot write \(path): \(String(cString: strerror(failure))).")
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}
