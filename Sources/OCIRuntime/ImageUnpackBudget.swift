import ContainerRuntime
import Synchronization

/// The file data one image may unpack in all its layers together (`max_image_unpacked_bytes`),
/// shared by the layers of one pull while they unpack concurrently. A layer unpacked by this
/// pull charges each file as its header is read, so nothing beyond the limit is written; a
/// layer already on the drone charges its recorded size.
final class ImageUnpackBudget: Sendable {
    let limit: Int64
    let image: String
    private let used = Mutex<Int64>(0)

    init(limit: Int64, image: String) {
        self.limit = limit
        self.image = image
    }

    /// Adds `bytes` (at most `max_file_bytes` or a layer's recorded size, both ≤ 2^50) and
    /// refuses once the total is beyond the limit; the total stays ≤ limit + 2^50 < 2^63.
    func charge(_ bytes: Int64) throws(RuntimeError) {
        let bounded = min(max(bytes, 0), OCIImageLimits.maximumSetting)
        let within = used.withLock { total -> Bool in
            guard total <= limit else { return false }
            total += bounded
            return total <= limit
        }
        guard within else {
            throw OCIImageLimits.exceeded("max_image_unpacked_bytes", "Image \(image) unpacks to more than \(limit) bytes")
        }
    }

    var usedBytes: Int64 { used.withLock { $0 } }
}
