import NIOCore
import NIOEmbedded
import PlaneTestSupport
import Testing
@testable import PlaneDNS

/// DNS over TCP without sockets: `DNSStreamConnection` alone, and `DNSStreamHandler` on an
/// `EmbeddedChannel` (framing, pacing by the socket's writability, the deadline).
struct DNSStreamHandlerTests {
    let zone = try! DNSName("plane.test")

    /// A query for `louie.plane.test` A with its two-byte length.
    func framedQuery(id: UInt16) throws -> [UInt8] {
        let query = try DNSMessageWriter.serialize(DNSMessage(header: DNSHeader(id: id), questions: [DNSQuestion(name: try DNSName("louie.plane.test"), type: .a)]))
        return [UInt8(query.count >> 8), UInt8(query.count & 0xFF)] + query
    }

    struct Harness {
        let channel: EmbeddedChannel
        let reads: ReadCounter
        let loop: EmbeddedEventLoop
        var slowClients: () -> Int
    }

    func make(timeout: TimeAmount = .seconds(10)) throws -> Harness {
        let store = DNSRecordStore(zones: [zone])
        try store.setAddress("12.12.12.12", name: "louie", zone: zone)
        let responder = DNSResponder(store: store, authority: DNSAuthority(nameServer: nil, mailbox: nil))
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let reads = ReadCounter()
        final class Box { var slow = 0 }
        let box = Box()
        try channel.pipeline.syncOperations.addHandler(reads)
        try channel.pipeline.syncOperations.addHandler(DNSStreamHandler(responder: responder, counters: DNSQueryCounters(), timeout: timeout) { _ in box.slow += 1 })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 53)).wait()
        return Harness(channel: channel, reads: reads, loop: loop, slowClients: { box.slow })
    }

    /// The ids of the answers written so far.
    func answerIDs(_ channel: EmbeddedChannel) throws -> [UInt16] {
        var ids: [UInt16] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while let length = buffer.readInteger(as: UInt16.self), let message = buffer.readBytes(length: Int(length)) {
                let answer = try DNSMessageReader.parse(message)
                #expect(answer.header.isResponse && answer.answers.count == 1)
                ids.append(answer.header.id)
            }
        }
        return ids
    }

    @Test func queriesAreFramedWhateverTheReadsSplitThem() throws {
        let h = try make()
        let bytes = try framedQuery(id: 1) + framedQuery(id: 2) + framedQuery(id: 3)
        // A byte at a time, then the rest in pieces of odd sizes.
        for byte in bytes.prefix(5) { try h.channel.writeInbound(ByteBuffer(bytes: [byte])) }
        var offset = 5
        while offset < bytes.count {
            let end = min(offset + 7, bytes.count)
            try h.channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
        h.channel.pipeline.fireChannelReadComplete()
        #expect(try answerIDs(h.channel) == [1, 2, 3])
        #expect(try h.channel.finish().isClean)
    }

    @Test func nothingIsAnsweredOrReadWhileTheSocketTakesNoMore() throws {
        let h = try make()
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        try h.channel.writeInbound(ByteBuffer(bytes: try framedQuery(id: 7) + framedQuery(id: 8)))
        h.channel.pipeline.fireChannelReadComplete()
        #expect(try answerIDs(h.channel) == [])
        let before = h.reads.reads
        h.channel.read()
        #expect(h.reads.reads == before, "a read while the answers cannot leave")
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        #expect(try answerIDs(h.channel) == [7, 8])
        #expect(h.reads.reads == before + 1, "the held read goes once the answers left")
        #expect(try h.channel.finish().isClean)
    }

    @Test func noMoreThanOneLargestMessageWaitsUnread() throws {
        let h = try make()
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        // Queries beyond one largest message arrived while nothing could be answered.
        let one = try framedQuery(id: 9)
        try h.channel.writeInbound(ByteBuffer(bytes: Array([[UInt8]](repeating: one, count: 65_537 / one.count + 1).joined())))
        let before = h.reads.reads
        h.channel.isWritable = true
        h.channel.read()
        // Writable again, but the waiting bytes are not answered until the next event: the
        // read waits for them.
        #expect(h.reads.reads == before)
        h.channel.pipeline.fireChannelWritabilityChanged()
        #expect(h.reads.reads == before + 1)
        #expect(try answerIDs(h.channel).count == 65_537 / one.count + 1)
        _ = try? h.channel.finish()
    }

    @Test func aQuerySentTooSlowlyClosesTheConnection() throws {
        let h = try make(timeout: .seconds(2))
        let query = try framedQuery(id: 4)
        // Whole queries keep it open: the deadline starts again at each answer.
        for step in 0..<3 {
            h.loop.advanceTime(by: .milliseconds(1500))
            try h.channel.writeInbound(ByteBuffer(bytes: query))
            #expect(h.channel.isActive, "step \(step)")
        }
        #expect(try answerIDs(h.channel) == [4, 4, 4])
        // A byte every half second is not a query within two seconds.
        for byte in query.prefix(5) {
            h.loop.advanceTime(by: .milliseconds(500))
            if h.channel.isActive { try h.channel.writeInbound(ByteBuffer(bytes: [byte])) }
        }
        #expect(!h.channel.isActive)
        #expect(h.slowClients() == 1)
    }

    @Test func anIdleConnectionClosesQuietly() throws {
        let h = try make(timeout: .seconds(2))
        h.loop.advanceTime(by: .seconds(3))
        #expect(!h.channel.isActive)
        #expect(h.slowClients() == 0)
    }

    @Test func aClientThatReadsNoAnswersIsClosed() throws {
        let h = try make(timeout: .seconds(2))
        try h.channel.writeInbound(ByteBuffer(bytes: try framedQuery(id: 5)))
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        try h.channel.writeInbound(ByteBuffer(bytes: try framedQuery(id: 6)))
        h.loop.advanceTime(by: .seconds(3))
        #expect(!h.channel.isActive)
        #expect(h.slowClients() == 1)
    }

    @Test func theConnectionFramesAndKeepsItsDeadline() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var connection = DNSStreamConnection(timeout: .seconds(5), now: start)
        #expect(connection.deadline == start + .seconds(5) && !connection.isWithinQuery && connection.wantsInput)
        var bytes = ByteBuffer(bytes: [0, 3, 0xAA, 0xBB])
        connection.received(&bytes)
        #expect(connection.nextQuery(now: start + .seconds(1)) == nil && connection.isWithinQuery)
        #expect(connection.timerFired(now: start + .seconds(4)) == .wait(until: start + .seconds(5)))
        bytes = ByteBuffer(bytes: [0xCC, 0, 0])
        connection.received(&bytes)
        #expect(connection.nextQuery(now: start + .seconds(2)) == ByteBuffer(bytes: [0xAA, 0xBB, 0xCC]))
        #expect(connection.deadline == start + .seconds(7))
        // An empty message is a message (the responder drops it).
        #expect(connection.nextQuery(now: start + .seconds(3)) == ByteBuffer())
        #expect(!connection.isWithinQuery && connection.timerFired(now: start + .seconds(8)) == .close)
        bytes = ByteBuffer(repeating: 0xFF, count: DNSStreamConnection.maxBufferedBytes)
        connection.received(&bytes)
        #expect(!connection.wantsInput)
    }

    /// A client that sends whole queries without pause, each read ending inside one, keeps
    /// its connection (its queries arrive whole) and must not make the connection keep
    /// every byte it sent: the buffer stays about one read long. (It kept all of them.)
    @Test func memoryStaysBoundedWhenReadsEndInsideQueries() throws {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var connection = DNSStreamConnection(timeout: .seconds(5), now: start)
        var queries = 0
        var largest = 0
        for var read in EndlessStream(repeating: try framedQuery(id: 7), readSize: 65_536 - 5).prefix(200) {
            connection.received(&read)
            while connection.nextQuery(now: start) != nil { queries += 1 }
            largest = max(largest, connection.bufferCapacity)
        }
        #expect(queries > 100_000)
        #expect(largest <= 2 * 65_536, "the connection's buffer grew to \(largest) bytes")
    }
}
