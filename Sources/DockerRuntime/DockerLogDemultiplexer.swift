import ContainerRuntime
import PlaneCore

/// Splits Docker's multiplexed log stream (non-TTY containers): frames of an 8-byte header
/// (stream byte, three zero bytes, big-endian length) and payload, which do not align with
/// the chunks the HTTP body arrives in. Yields complete lines per stream.
///
/// With `timestamps` (the stream was asked for with `timestamps=1`), each frame's payload
/// starts with the entry's RFC 3339 time and a space; a line takes the time of the frame
/// that began it. Times are made strictly increasing (a line with the time of the one
/// before gets one nanosecond more), the same way on every read from the log's start, so a
/// reader that remembers the last time it handled resumes after exactly that line.
public struct DockerLogDemultiplexer: Sendable {
    private let timestamps: Bool
    /// Bytes of a frame header, or of a payload's time prefix, not complete yet.
    private var buffer: [UInt8] = []
    /// The frame being read: its stream, payload bytes still to come, and whether its time
    /// prefix has been read.
    private var frame: (stream: LogLine.Stream, remaining: Int, timeRead: Bool)?
    private var frameTime: Timestamp?
    private var partial: [LogLine.Stream: (text: [UInt8], time: Timestamp?)] = [:]
    private var lastTime: Timestamp?

    /// The longest time prefix read (`2024-01-01T00:00:00.123456789+00:00 ` and then some).
    static let maximumTimePrefix = 64

    public init(timestamps: Bool = false) {
        self.timestamps = timestamps
    }

    /// Feeds a chunk; returns the lines it completed. Payloads are read as they arrive (a
    /// frame is never held whole, whatever length its header announces) and lines are cut
    /// at `LogLine.maximumLength`.
    public mutating func feed(_ chunk: some Sequence<UInt8>) -> [LogLine] {
        var lines: [LogLine] = []
        var bytes = Array(chunk)[...]
        while !bytes.isEmpty {
            guard let current = frame else {
                let needed = 8 - buffer.count
                buffer.append(contentsOf: bytes.prefix(needed))
                bytes = bytes.dropFirst(needed)
                guard buffer.count == 8 else { break }
                let length = Int(buffer[4]) << 24 | Int(buffer[5]) << 16 | Int(buffer[6]) << 8 | Int(buffer[7])
                frame = (buffer[0] == 2 ? .stderr : .stdout, length, !timestamps)
                frameTime = nil
                buffer.removeAll(keepingCapacity: true)
                continue
            }
            if current.remaining == 0 {
                frame = nil
                continue
            }
            if !current.timeRead {
                // The time and a space start the payload; read up to the space.
                let limit = min(current.remaining, Self.maximumTimePrefix) - buffer.count
                let taken = bytes.prefix(limit)
                if let space = taken.firstIndex(of: UInt8(ascii: " ")) {
                    buffer.append(contentsOf: bytes[bytes.startIndex..<space])
                    bytes = bytes[bytes.index(after: space)...]
                    frameTime = try? Timestamp(rfc3339: String(decoding: buffer, as: UTF8.self))
                    frame = (current.stream, current.remaining - buffer.count - 1, true)
                    buffer.removeAll(keepingCapacity: true)
                } else if buffer.count + taken.count >= min(current.remaining, Self.maximumTimePrefix) {
                    // No time prefix after all: the bytes are text.
                    buffer.append(contentsOf: taken)
                    bytes = bytes.dropFirst(taken.count)
                    frame = (current.stream, current.remaining - buffer.count, true)
                    let text = buffer
                    buffer.removeAll(keepingCapacity: true)
                    append(text[...], stream: current.stream, to: &lines)
                } else {
                    buffer.append(contentsOf: taken)
                    bytes = bytes.dropFirst(taken.count)
                }
                continue
            }
            let payload = bytes.prefix(current.remaining)
            bytes = bytes.dropFirst(payload.count)
            frame = (current.stream, current.remaining - payload.count, true)
            append(payload, stream: current.stream, to: &lines)
        }
        return lines
    }

    private mutating func append(_ payload: ArraySlice<UInt8>, stream: LogLine.Stream, to lines: inout [LogLine]) {
        var pending = partial[stream] ?? ([], nil)
        for byte in payload {
            if pending.time == nil { pending.time = frameTime }
            if byte == UInt8(ascii: "\n") {
                lines.append(line(stream, pending))
                pending = ([], nil)
            } else {
                pending.text.append(byte)
                if pending.text.count >= LogLine.maximumLength {
                    lines.append(line(stream, pending))
                    pending = ([], nil)
                }
            }
        }
        partial[stream] = pending
    }

    /// Lines left without a final newline when the stream ends.
    public mutating func finish() -> [LogLine] {
        var lines: [LogLine] = []
        for stream in [LogLine.Stream.stdout, .stderr] {
            if let pending = partial[stream], !pending.text.isEmpty {
                lines.append(line(stream, pending))
            }
        }
        partial.removeAll()
        return lines
    }

    private mutating func line(_ stream: LogLine.Stream, _ pending: (text: [UInt8], time: Timestamp?)) -> LogLine {
        var time = pending.time
        if let given = time, let last = lastTime, given <= last {
            time = Timestamp(nanosecondsSinceEpoch: last.nanosecondsSinceEpoch &+ 1)
        }
        if let time { lastTime = time }
        return LogLine(stream: stream, text: String(decoding: pending.text, as: UTF8.self), time: time)
    }
}

/// Splits a byte stream into newline-delimited records (Docker's `/events` and pull
/// progress are JSON lines that do not align with chunks).
public struct LineSplitter: Sendable {
    private var pending: [UInt8] = []
    public init() {}

    /// Records longer than this are dropped (Docker's events and progress lines are far
    /// shorter), so a broken stream cannot make the drone hold it whole.
    public static let maximumRecordLength = 1 << 20
    private var overlong = false

    public mutating func feed(_ chunk: some Sequence<UInt8>) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        for byte in chunk {
            if byte == UInt8(ascii: "\n") {
                if !pending.isEmpty, !overlong { lines.append(pending) }
                pending.removeAll(keepingCapacity: true)
                overlong = false
            } else if pending.count < Self.maximumRecordLength {
                pending.append(byte)
            } else {
                overlong = true
                pending.removeAll(keepingCapacity: true)
            }
        }
        return lines
    }

    public mutating func finish() -> [UInt8]? {
        defer { pending.removeAll() }
        return pending.isEmpty ? nil : pending
    }
}
