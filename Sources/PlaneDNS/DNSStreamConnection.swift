import NIOCore

/// One DNS-over-TCP connection's protocol, without I/O (RFC 1035 §4.2.2, RFC 7766): frames
/// queries out of the bytes read (each behind a two-byte length), says whether to read more,
/// and keeps the connection's deadline. `DNSStreamHandler` performs what it decides.
///
/// The deadline bounds how long the connection may wait for a whole query: from its start,
/// and again from each answer. A client that sends a query a byte at a time, or that stops
/// reading its answers (they are not answered further while the socket cannot take them, so
/// no query arrives whole), is closed when it passes; one that sends its queries whole is
/// not. Bytes are read only while less than one largest message is waiting, so a client
/// that pipelines queries faster than it reads answers holds at most that much here.
struct DNSStreamConnection {
    /// The largest message plus its length: more bytes than this are never held unread.
    static let maxBufferedBytes = 2 + 65_535

    let timeout: TimeAmount
    /// Bytes read and not framed yet.
    private(set) var buffer = ByteBuffer()
    /// When the connection closes unless a whole query arrives first.
    private(set) var deadline: NIODeadline

    init(timeout: TimeAmount, now: NIODeadline) {
        self.timeout = timeout
        deadline = now + timeout
    }

    /// Keeps the bytes read.
    mutating func received(_ bytes: inout ByteBuffer) {
        if buffer.readableBytes == 0 {
            // The common case: one read holds whole queries. Taken as it is, without a copy.
            buffer = bytes
        } else {
            // The queries already taken go first: a client whose every read ends inside a
            // query would otherwise make the buffer keep everything the connection sent.
            buffer.discardReadBytes()
            buffer.writeBuffer(&bytes)
        }
    }

    /// Bytes of memory the buffer holds (what was received, taken or not).
    var bufferCapacity: Int { buffer.capacity }

    /// The next whole query (without its length), or nil while none is whole. Taking one
    /// starts the wait for the next: the caller answers it at once.
    mutating func nextQuery(now: NIODeadline) -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              let query = buffer.getSlice(at: buffer.readerIndex + 2, length: Int(length)) else { return nil }
        buffer.moveReaderIndex(forwardBy: 2 + Int(length))
        if buffer.readableBytes == 0 { buffer.clear() }
        deadline = now + timeout
        return query
    }

    /// Whether reading more is allowed: less than one largest message is waiting.
    var wantsInput: Bool { buffer.readableBytes < Self.maxBufferedBytes }

    /// Part of a query arrived and its rest has not.
    var isWithinQuery: Bool { buffer.readableBytes > 0 }

    enum TimerDecision: Equatable {
        /// The deadline passed: close the connection.
        case close
        /// Not yet (the deadline moved on since the timer was set): look again then.
        case wait(until: NIODeadline)
    }

    func timerFired(now: NIODeadline) -> TimerDecision {
        now >= deadline ? .close : .wait(until: deadline)
    }
}
