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
    private var buffer: [UInt8] = []
    private var partial: [LogLine.Stream: (text: [UInt8], time: Timestamp?)] = [:]
    private var lastTime: Timestamp?

    public init(timestamps: Bool = false) {
        self.timestamps = timestamps
    }

    /// Feeds a chunk; returns the lines it completed.
    public mutating func feed(_ chunk: some Sequence<UInt8>) -> [LogLine] {
        buffer.append(contentsOf: chunk)
        var lines: [LogLine] = []
        var offset = 0
        while buffer.count - offset >= 8 {
            let streamByte = buffer[offset]
            let length = Int(buffer[offset + 4]) << 24 | Int(buffer[offset + 5]) << 16 | Int(buffer[offset + 6]) << 8 | Int(buffer[offset + 7])
            guard buffer.count - offset - 8 >= length else { break }
            var payload = buffer[(offset + 8)..<(offset + 8 + length)]
            offset += 8 + length
            var frameTime: Timestamp?
            if timestamps, let space = payload.firstIndex(of: UInt8(ascii: " ")),
               let time = try? Timestamp(rfc3339: String(decoding: payload[..<space], as: UTF8.self)) {
                frameTime = time
                payload = payload[payload.index(after: space)...]
            }
            let stream: LogLine.Stream = streamByte == 2 ? .stderr : .stdout
            var pending = partial[stream] ?? ([], nil)
            for byte in payload {
                if pending.time == nil { pending.time = frameTime }
                if byte == UInt8(ascii: "\n") {
                    lines.append(line(stream, pending))
                    pending = ([], nil)
                } else {
                    pending.text.append(byte)
                }
            }
            partial[stream] = pending
        }
        buffer.removeFirst(offset)
        return lines
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
            time = Timestamp(nanosecondsSinceEpoch: last.nanosecondsSinceEpoch + 1)
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

    public mutating func feed(_ chunk: some Sequence<UInt8>) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        for byte in chunk {
            if byte == UInt8(ascii: "\n") {
                if !pending.isEmpty { lines.append(pending) }
                pending.removeAll(keepingCapacity: true)
            } else {
                pending.append(byte)
            }
        }
        return lines
    }

    public mutating func finish() -> [UInt8]? {
        defer { pending.removeAll() }
        return pending.isEmpty ? nil : pending
    }
}
