import CLinux
import CZlib
import CZstd
import ContainerRuntime
import Foundation

/// A blocking, pull-based stream of bytes: layer blobs are read, decompressed and unpacked
/// in one pass without holding a layer in memory.
protocol ByteSource {
    /// Reads up to `buffer.count` bytes; 0 at the end.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Int
}

extension Array where Element == UInt8 {
    /// `withUnsafeMutableBytes` for a body that throws `RuntimeError` (the standard one
    /// rethrows untyped).
    mutating func withBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws(RuntimeError) -> R) throws(RuntimeError) -> R {
        var result: Result<R, RuntimeError>?
        withUnsafeMutableBytes { raw in result = Result { () throws(RuntimeError) in try body(raw) } }
        return try result!.get()
    }
}

/// A file, read with `read(2)`.
struct FileByteSource: ByteSource {
    let descriptor: Int32
    let path: String

    init(path: String) throws(RuntimeError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RuntimeError(.internal, "Cannot open \(path): \(String(cString: strerror(errno))).") }
        descriptor = fd
        self.path = path
    }

    func close() { _ = Glibc.close(descriptor) }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Int {
        while true {
            let count = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            throw RuntimeError(.internal, "Cannot read \(path): \(String(cString: strerror(errno))).")
        }
    }
}

/// Bytes held in memory (tests, small blobs).
struct MemoryByteSource: ByteSource {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Int {
        let count = min(buffer.count, bytes.count - offset)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count)
        }
        offset += count
        return count
    }
}

/// Passes bytes through while hashing them, to check a blob's digest as it is read.
final class HashingByteSource<Upstream: ByteSource>: ByteSource {
    private var upstream: Upstream
    private var hasher: OCIDigest.Hasher

    init(_ upstream: Upstream, algorithm: OCIDigest.Algorithm) {
        self.upstream = upstream
        hasher = OCIDigest.Hasher(algorithm)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Int {
        let count = try upstream.read(into: buffer)
        hasher.update(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
        return count
    }

    /// Reads (and hashes) whatever is left.
    func drain() throws(RuntimeError) {
        var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        while try scratch.withBytes({ raw throws(RuntimeError) in try read(into: raw) }) > 0 {}
    }

    var digest: OCIDigest { hasher.finalize() }
}

/// Inflates gzip (one or more members, as `cat a.gz b.gz` makes) with zlib.
final class GzipByteSource<Upstream: ByteSource>: ByteSource {
    private var upstream: Upstream
    private var stream = z_stream()
    private var input = [UInt8](repeating: 0, count: 64 * 1024)
    private var inputCount = 0
    private var inputOffset = 0
    private var finished = false
    private let what: String

    init(_ upstream: Upstream, what: String) throws(RuntimeError) {
        self.upstream = upstream
        self.what = what
        // 15 + 32: a window of 32 KiB and automatic gzip/zlib header detection.
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw RuntimeError(.internal, "zlib could not be initialized for \(what).")
        }
    }

    deinit { inflateEnd(&stream) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Int {
        guard !finished, buffer.count > 0 else { return 0 }
        while true {
            if inputOffset == inputCount {
                inputCount = try input.withBytes { raw throws(RuntimeError) in try upstream.read(into: raw) }
                inputOffset = 0
                if inputCount == 0 {
                    throw RuntimeError(.imageUnavailable, "\(what) ends in the middle of its gzip stream (a truncated download?).")
                }
            }
            let (status, produced, consumed) = input.withUnsafeMutableBytes { raw in
                stream.next_in = raw.baseAddress!.assumingMemoryBound(to: Bytef.self) + inputOffset
                stream.avail_in = UInt32(inputCount - inputOffset)
                stream.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = UInt32(buffer.count)
                let status = inflate(&stream, Z_NO_FLUSH)
                return (status, buffer.count - Int(stream.avail_out), (inputCount - inputOffset) - Int(stream.avail_in))
            }
            inputOffset += consumed
            switch status {
            case Z_OK:
                if produced > 0 { return produced }
            case Z_BUF_ERROR:
                // No progress possible: it needs more input (read above on the next turn).
                if produced > 0 { return produced }
                if inputOffset < inputCount, consumed == 0 {
                    throw RuntimeError(.imageUnavailable, "\(what) is not valid gzip data: inflate made no progress.")
                }
            case Z_STREAM_END:
                // Another member may follow; gzip allows concatenation.
                if inputOffset == inputCount {
                    inputCount = try input.withBytes { raw throws(RuntimeError) in try upstream.read(into: raw) }
                    inputOffset = 0
                }
                if inputCount == 0 {
                    finished = true
                } else {
                    inflateReset(&stream)
                }
                if produced > 0 || finished { return produced }
            default:
                let message = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                throw RuntimeError(.imageUnavailable, "\(what) is not valid gzip data: \(message).")
            }
        }
    }
}

/// Decompresses zstd frames with libzstd.
final class ZstdByteSource<Upstream: ByteSource>: ByteSource {
    private var upstream: Upstream
    private let stream: OpaquePointer
    private var input = [UInt8](repeating: 0, count: 64 * 1024)
    private var inputCount = 0
    private var inputOffset = 0
    private var upstreamEnded = false
    private var frameComplete = true
    private let what: String

    init(_ upstream: Upstream, what: String) throws(RuntimeError) {
        self.upstream = upstream
        self.what = what
        guard let stream = ZSTD_createDStream() else { throw RuntimeError(.internal, "zstd could not be initialized for \(what).") }
        self.stream = stream
        ZSTD_initDStream(stream)
    }

    deinit { ZSTD_freeDStream(stream) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(RuntimeError) -> Int {
        guard buffer.count > 0 else { return 0 }
        while true {
            if inputOffset == inputCount, !upstreamEnded {
                inputCount = try input.withBytes { raw throws(RuntimeError) in try upstream.read(into: raw) }
                inputOffset = 0
                upstreamEnded = inputCount == 0
            }
            if upstreamEnded, inputOffset == inputCount {
                if !frameComplete { throw RuntimeError(.imageUnavailable, "\(what) ends in the middle of its zstd stream (a truncated download?).") }
                return 0
            }
            var output = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
            let (result, consumed) = input.withUnsafeBytes { raw in
                var source = ZSTD_inBuffer(src: raw.baseAddress! + inputOffset, size: inputCount - inputOffset, pos: 0)
                let result = ZSTD_decompressStream(stream, &output, &source)
                return (result, source.pos)
            }
            inputOffset += consumed
            if ZSTD_isError(result) != 0 {
                throw RuntimeError(.imageUnavailable, "\(what) is not valid zstd data: \(String(cString: ZSTD_getErrorName(result))).")
            }
            frameComplete = result == 0
            if output.pos > 0 { return output.pos }
        }
    }
}
