import ContainerRuntime
import PlaneCore

/// `BoundedFile` with the OCI runtime's errors: files an image's author or an operator's
/// layout controls.
enum BoundedFileReader {
    /// A regular file at `path` (links followed: the path is the operator's).
    static func read(_ path: String, limit: Int, what: String, limitKey: String? = nil) throws(RuntimeError) -> [UInt8] {
        do {
            return try BoundedFile.read(path, limit: limit)
        } catch {
            throw failure(error, what: "\(what) (\(path))", limitKey: limitKey)
        }
    }

    /// A file of the image's root at `relative`, never through a symlink; nil when missing.
    static func read(_ relative: String, under root: String, limit: Int, what: String) throws(RuntimeError) -> [UInt8]? {
        do {
            return try BoundedFile.read(relative, under: root, limit: limit)
        } catch .missing {
            return nil
        } catch {
            throw failure(error, what: what, limitKey: nil)
        }
    }

    private static func failure(_ failure: BoundedFile.Failure, what: String, limitKey: String?) -> RuntimeError {
        switch failure {
        case .tooLarge: RuntimeError(.imageUnavailable, "\(what) cannot be read: \(failure.reason).", limit: limitKey)
        case .missing, .unreadable: RuntimeError(.imageUnavailable, "\(what) cannot be read: \(failure.reason).")
        case .link, .notRegular: RuntimeError(.invalidSpec, "\(what) is not a regular file inside the image: \(failure.reason).")
        }
    }
}
