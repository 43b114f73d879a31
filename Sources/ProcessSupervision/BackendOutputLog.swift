import ContainerRuntime
import PlaneCore

/// The format of a backend's `output.log`, written by its shim: one record per output line,
/// `<nanoseconds since the epoch> <o|e> <text>\n`. Timestamps strictly increase within a
/// file, so a reader that remembers the last one it handled never repeats or skips a line.
/// Lines longer than `maximumLineLength` are split.
public enum BackendOutputLog {
    public static let maximumLineLength = LogLine.maximumLength

    /// One record, encoded.
    public static func encode(time: Int64, stream: LogLine.Stream, text: some Collection<UInt8>) -> [UInt8] {
        var record = Array(String(time).utf8)
        record.append(UInt8(ascii: " "))
        record.append(stream == .stdout ? UInt8(ascii: "o") : UInt8(ascii: "e"))
        record.append(UInt8(ascii: " "))
        record.append(contentsOf: text)
        record.append(UInt8(ascii: "\n"))
        return record
    }

    /// Decodes one record (without its newline); nil when it is not one (a torn write).
    public static func decode(_ record: some Collection<UInt8>) -> LogLine? {
        guard let firstSpace = record.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        guard let nanoseconds = Int64(String(decoding: record[record.startIndex..<firstSpace], as: UTF8.self)) else { return nil }
        let streamIndex = record.index(after: firstSpace)
        guard streamIndex != record.endIndex else { return nil }
        let stream: LogLine.Stream
        switch record[streamIndex] {
        case UInt8(ascii: "o"): stream = .stdout
        case UInt8(ascii: "e"): stream = .stderr
        default: return nil
        }
        let separator = record.index(after: streamIndex)
        guard separator != record.endIndex, record[separator] == UInt8(ascii: " ") else { return nil }
        let text = String(decoding: record[record.index(after: separator)...], as: UTF8.self)
        return LogLine(stream: stream, text: text, time: Timestamp(nanosecondsSinceEpoch: nanoseconds))
    }

    /// Splits a stream's output into lines: complete lines come out as they are found, an
    /// unfinished one waits for more (or for `finish`) unless it grew past the maximum.
    public struct LineAssembler: Sendable {
        private var pending: [UInt8] = []

        public init() {}

        public mutating func append(_ bytes: some Collection<UInt8>, emit: ([UInt8]) -> Void) {
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    emit(pending)
                    pending.removeAll(keepingCapacity: true)
                } else {
                    pending.append(byte)
                    if pending.count >= BackendOutputLog.maximumLineLength {
                        emit(pending)
                        pending.removeAll(keepingCapacity: true)
                    }
                }
            }
        }

        /// The unfinished last line, if any (the stream ended).
        public mutating func finish(emit: ([UInt8]) -> Void) {
            if !pending.isEmpty { emit(pending) }
            pending.removeAll()
        }
    }

    /// The longest record `encode` writes for a line of at most `maximumLineLength` bytes:
    /// the timestamp (at most 20 characters with a sign), the stream and two spaces.
    public static let maximumRecordLength = maximumLineLength + 23

    /// Turns the bytes of an `output.log` read piece by piece into lines. A record longer
    /// than any the shim writes (a damaged file) is skipped up to its newline instead of
    /// being held: the reader's memory stays bounded whatever the file holds.
    public struct Reader: Sendable {
        private var pending: [UInt8] = []
        /// Inside an overlong record: its bytes are dropped until the next newline.
        private var skipping = false

        public init() {}

        /// The complete records in `bytes` (plus what an earlier call left unfinished).
        public mutating func lines(in bytes: some Collection<UInt8>) -> [LogLine] {
            var lines: [LogLine] = []
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    if !skipping, let line = BackendOutputLog.decode(pending) { lines.append(line) }
                    pending.removeAll(keepingCapacity: true)
                    skipping = false
                } else if !skipping {
                    pending.append(byte)
                    if pending.count > BackendOutputLog.maximumRecordLength {
                        pending.removeAll(keepingCapacity: true)
                        skipping = true
                    }
                }
            }
            return lines
        }
    }
}
