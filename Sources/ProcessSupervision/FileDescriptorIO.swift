import Foundation

/// Small descriptor helpers shared by the shims, the unpacker and the registry client.
public enum FileDescriptorIO {
    /// Writes all of `bytes` (retrying short writes and EINTR); false on an error.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}
