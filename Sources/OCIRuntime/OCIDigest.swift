import ContainerRuntime
import Crypto

/// A content digest, `algorithm:hex` (`sha256` and `sha512`, lowercase hex), as the OCI
/// image spec names every blob. Content is checked against it before anything uses it.
public struct OCIDigest: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Algorithm: String, Sendable, Hashable {
        case sha256, sha512
        var hexLength: Int { self == .sha256 ? 64 : 128 }
    }

    public let algorithm: Algorithm
    public let hex: String

    public init(_ text: String) throws(RuntimeError) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let algorithm = Algorithm(rawValue: String(parts[0])) else {
            throw RuntimeError(.invalidSpec, "'\(text)' is not a digest this runtime checks; it takes sha256:<64 hex digits> or sha512:<128 hex digits>.")
        }
        let hex = String(parts[1])
        guard hex.utf8.count == algorithm.hexLength, hex.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }) else {
            throw RuntimeError(.invalidSpec, "'\(text)' is not a valid \(algorithm.rawValue) digest (\(algorithm.hexLength) lowercase hex digits).")
        }
        self.algorithm = algorithm
        self.hex = hex
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try OCIDigest(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public var description: String { "\(algorithm.rawValue):\(hex)" }

    /// The sha256 digest of `bytes`.
    public static func sha256<Bytes: Sequence<UInt8>>(of bytes: Bytes) -> OCIDigest {
        var hasher = Hasher(.sha256)
        hasher.update(Array(bytes))
        return hasher.finalize()
    }

    /// Incremental hashing of content as it streams in.
    public struct Hasher: Sendable {
        private var sha256: SHA256?
        private var sha512: SHA512?
        private let algorithm: Algorithm

        public init(_ algorithm: Algorithm) {
            self.algorithm = algorithm
            if algorithm == .sha256 { sha256 = SHA256() } else { sha512 = SHA512() }
        }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            sha256?.update(bufferPointer: bytes)
            sha512?.update(bufferPointer: bytes)
        }

        public mutating func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { update($0) }
        }

        public func finalize() -> OCIDigest {
            let digest: [UInt8] = if let sha256 { Array(sha256.finalize()) } else { Array(sha512!.finalize()) }
            let hex = digest.map { byte in
                let text = String(byte, radix: 16)
                return byte < 16 ? "0" + text : text
            }.joined()
            return try! OCIDigest("\(algorithm.rawValue):\(hex)")
        }
    }
}
