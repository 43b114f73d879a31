import Foundation
import Logging
import PlaneTestSupport
import Synchronization
import Testing
@testable import PlaneDNS

/// The real server's TCP side against hostile clients on loopback: a query sent a byte at a
/// time, a client that sends queries and never reads the answers, and more connections than
/// the limits allow, from one address and from several (127.0.0.0/8 gives a test many).
struct DNSServerTCPLimitTests {
    let zone = try! DNSName("plane.test")

    func withServer(_ tune: (inout DNSServerConfiguration) -> Void,
                    _ body: (DNSServer, Int, @Sendable () -> [String]) async throws -> Void) async throws {
        let store = DNSRecordStore(zones: [zone])
        try store.setAddress("12.12.12.12", name: "louie", zone: zone)
        var configuration = DNSServerConfiguration(bindHost: "127.0.0.1", port: 0)
        configuration.udpSockets = 1
        tune(&configuration)
        let hits = Mutex<[String]>([])
        let server = DNSServer(configuration: configuration, responder: DNSResponder(store: store, authority: DNSAuthority(nameServer: nil, mailbox: nil)),
                               logger: Logger(label: "test.dns")) { key, _ in hits.withLock { $0.append(key) } }
        let address = try await server.start()
        do {
            try await body(server, address.port) { hits.withLock { $0 } }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    static func framedQuery(id: UInt16) throws -> [UInt8] {
        let query = try DNSMessageWriter.serialize(DNSMessage(header: DNSHeader(id: id), questions: [DNSQuestion(name: try DNSName("louie.plane.test"), type: .a)]))
        return [UInt8(query.count >> 8), UInt8(query.count & 0xFF)] + query
    }

    @Test func aQueryTrickledAByteAtATimeIsCut() async throws {
        try await withServer({ $0.tcpTimeout = .seconds(1) }) { server, port, hits in
            let client = try RawTCPClient(port: port)
            defer { client.close() }
            // One byte every 250 ms: the whole query would take about 9 s; the connection
            // gets 1 s for it. (A timer reset by every read never closed it.)
            let query = try Self.framedQuery(id: 1)
            var sent = 0
            for byte in query {
                guard client.send([byte]) else { break }
                sent += 1
                try await Task.sleep(for: .milliseconds(250))
                if client.closedByPeer() { break }
            }
            #expect(sent < query.count, "the server took the whole trickled query")
            #expect(try await eventually { server.openTCPConnections == 0 })
            #expect(hits().contains(DNSServerConfiguration.tcpTimeoutKey))
            // Others are answered.
            #expect(try await RawTCPClient.ask(port: port, id: 2) == 2)
        }
    }

    @Test func aClientThatNeverReadsIsNotReadEither() async throws {
        try await withServer({ $0.tcpTimeout = .seconds(2) }) { server, port, hits in
            let client = try RawTCPClient(port: port, smallBuffers: true)
            defer { client.close() }
            // Queries, as fast as the server takes them, and no answer read. A server that
            // kept reading would queue an answer for each in its memory: it must stop
            // reading once its answers cannot leave, so the sender stalls after what the
            // buffers hold (the server's and its kernel's, whose sizes it fixes: about
            // 400 KB), far below the 32 MiB offered.
            let batch = Array((0..<1000).map { _ in try! Self.framedQuery(id: 3) }.joined())
            let offered = 32 << 20
            // A stall counts once this much is sent: its answers are more than the server's
            // buffers hold (about 200 KiB), so the server is then stuck on writes however
            // late a loaded machine lets it read (a late reader could otherwise answer
            // everything into its buffers and look idle, not slow).
            let enough = 224 << 10
            let began = ContinuousClock.now
            var sent = 0
            var stalledSince: ContinuousClock.Instant?
            while sent < offered {
                // Whole queries: a batch continues where the socket's last take ended.
                let n = client.sendSome(batch[(sent % batch.count)...])
                if n > 0 {
                    sent += n
                    stalledSince = nil
                    continue
                }
                if let since = stalledSince {
                    if ContinuousClock.now - since > .seconds(1), sent >= enough || ContinuousClock.now - began > .seconds(30) { break }
                } else {
                    stalledSince = .now
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(sent < 1 << 20, "the server (and its kernel) took \(sent) bytes of queries whose answers nobody read")
            // Its connection ends within the timeout, and others are answered meanwhile.
            #expect(try await RawTCPClient.ask(port: port, id: 4) == 4)
            #expect(try await eventually { server.openTCPConnections == 0 })
            #expect(hits().contains(DNSServerConfiguration.tcpTimeoutKey), "sent \(sent) bytes, then stalled for \(stalledSince.map { ContinuousClock.now - $0 } ?? .zero)")
        }
    }

    @Test func connectionsAreBoundedPerAddressAndInTotal() async throws {
        try await withServer({ $0.maxTCPConnections = 5; $0.maxTCPConnectionsPerAddress = 3 }) { server, port, hits in
            var held: [RawTCPClient] = []
            defer { for client in held { client.close() } }
            for _ in 0..<3 { held.append(try RawTCPClient(port: port, from: "127.0.0.1")) }
            #expect(try await eventually { server.openTCPConnections == 3 })
            // A fourth from the same address is closed at once; another address still gets in.
            let refused = try RawTCPClient(port: port, from: "127.0.0.1")
            defer { refused.close() }
            #expect(await refused.waitUntilClosedByPeer())
            #expect(hits().contains(DNSServerConfiguration.maxTCPConnectionsPerAddressKey))
            for _ in 0..<2 { held.append(try RawTCPClient(port: port, from: "127.0.0.2")) }
            #expect(try await eventually { server.openTCPConnections == 5 })
            // Every place is taken: a third address is closed at once too.
            let full = try RawTCPClient(port: port, from: "127.0.0.3")
            defer { full.close() }
            #expect(await full.waitUntilClosedByPeer())
            #expect(hits().contains(DNSServerConfiguration.maxTCPConnectionsKey))
            // The admitted ones are answered; a place given back is taken again.
            for (index, client) in held.enumerated() {
                #expect(try client.ask(id: UInt16(10 + index)) == UInt16(10 + index))
            }
            held.removeFirst().close()
            #expect(try await eventually { server.openTCPConnections == 4 })
            #expect(try await RawTCPClient.ask(port: port, id: 20, from: "127.0.0.1") == 20)
        }
    }
}

/// A TCP client on raw sockets, for what a well-behaved client library would not do.
final class RawTCPClient: @unchecked Sendable {
    private var fd: Int32

    /// Connects from `from` (any loopback address) to 127.0.0.1:`port`; `smallBuffers` makes
    /// the kernel buffer as little as it can on this side.
    init(port: Int, from source: String = "127.0.0.1", smallBuffers: Bool = false) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket() failed (errno \(errno))") }
        if smallBuffers {
            var size: Int32 = 4096
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        let connected = bound == 0 ? withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } : -1
        guard connected == 0 else {
            let error = errno
            close()
            throw TestSupportError("connect from \(source) to port \(port) failed (errno \(error))")
        }
    }

    /// Sends all of `bytes`; false when the connection is gone.
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Sends what the socket takes now without waiting: the number of bytes, 0 for none.
    func sendSome(_ bytes: ArraySlice<UInt8>) -> Int {
        let n = bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        return max(n, 0)
    }

    /// Whether the peer has closed (a read now, without waiting, sees the end or a reset).
    func closedByPeer() -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Waits up to 10 s for the peer to close.
    func waitUntilClosedByPeer() async -> Bool {
        for _ in 0..<200 {
            if closedByPeer() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Asks for louie.plane.test over this connection and returns the answer's id.
    func ask(id: UInt16) throws -> UInt16 {
        guard send(try DNSServerTCPLimitTests.framedQuery(id: id)) else { throw TestSupportError("the query could not be sent") }
        let length = try read(2)
        let message = try read(Int(length[0]) << 8 | Int(length[1]))
        return try DNSMessageReader.parse(message).header.id
    }

    static func ask(port: Int, id: UInt16, from source: String = "127.0.0.1") async throws -> UInt16 {
        try await SystemProgram.offThePool {
            let client = try RawTCPClient(port: port, from: source)
            defer { client.close() }
            return try client.ask(id: id)
        }
    }

    private func read(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = bytes[offset...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw TestSupportError("the connection ended after \(offset) of \(count) bytes (errno \(errno))") }
            offset += n
        }
        return bytes
    }

    func close() {
        if fd >= 0 { Foundation.close(fd); fd = -1 }
    }

    deinit { close() }
}
