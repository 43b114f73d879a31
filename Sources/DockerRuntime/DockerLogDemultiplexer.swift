import ContainerRuntime

/// Splits Docker's multiplexed log stream (non-TTY containers): frames of an 8-byte header
/// (stream byte, three zero bytes, big-endian length) and payload, which do not align with
/// the chunks the HTTP body arrives in. Yields complete lines per stream.
public struct DockerLogDemultiplexer: Sendable {
    private var buffer: [UInt8] = []
    private var partial: [LogLine.Stream: [UInt8]] = [:]

    public init() {}

    /// Feeds a chunk; returns the lines it completed.
    public mutating func feed(_ chunk: some Sequence<UInt8>) -> [LogLine] {
        buffer.append(contentsOf: chunk)
        var lines: [LogLine] = []
        var offset = 0
        while buffer.count - offset >= 8 {
            let streamByte = buffer[offset]
            let length = Int(buffer[offset + 4]) << 24 | Int(buffer[offset + 5]) << 16 | Int(buffer[offset + 6]) << 8 | Int(buffer[offset + 7])
            guard buffer.count - offset - 8 >= length else { break }
            let payload = buffer[(offset + 8)..<(offset + 8 + length)]
            offset += 8 + length
            let stream: LogLine.Stream = streamByte == 2 ? .stderr : .stdout
            var pending = partial[stream] ?? []
            for byte in payload {
                if byte == UInt8(ascii: "\n") {
                    lines.append(LogLine(stream: stream, text: String(decoding: pending, as: UTF8.self)))
                    pending.removeAll(keepingCapacity: true)
                } else {
                    pending.append(byte)
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
            if let pending = partial[stream], !pending.isEmpty {
                lines.append(LogLine(stream: stream, text: String(decoding: pending, as: UTF8.self)))
            }
        }
        partial.removeAll()
        return lines
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
