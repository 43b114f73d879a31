import Foundation

/// A blocking TCP connection to a loopback port for tests that play a misbehaving client:
/// it sends any bytes, reads as much as it likes, half-closes, and ends with a FIN or a
/// reset. Every call blocks its thread, so async tests use it inside
/// `SystemProgram.offThePool`.
public final class RawTCPConnection: @unchecked Sendable {
    private let socket: TestSocket

    /// Connects to `127.0.0.1:port` from `source` (another loopback address plays another
    /// client); each read or write gives up after `timeout`.
    public init(port: Int, source: String? = nil, timeout: Duration = .seconds(5)) throws {
        socket = try TestSocket(host: "127.0.0.1", port: port, timeout: timeout, source: source)
    }

    public func send(_ bytes: [UInt8]) throws { try socket.send(bytes) }

    public func send(_ text: String) throws { try socket.send(Array(text.utf8)) }

    /// The bytes up to and including `marker`; throws when the connection closes first.
    public func read(until marker: String) throws -> [UInt8] { try socket.readUntil(Array(marker.utf8)) }

    /// Exactly `count` bytes; throws when the connection closes first.
    public func read(exactly count: Int) throws -> [UInt8] { try socket.read(exactly: count) }

    /// What one read returns: nil when the peer closed, empty when it timed out or the
    /// connection was reset.
    public func readSome() -> [UInt8]? { socket.readSome() }

    /// Everything until the peer closes (true) or a read times out (false).
    public func readUntilClosed() -> (bytes: [UInt8], closed: Bool) { socket.readUntilClosedOrTimeout() }

    /// Whether the peer has closed or reset the connection, looked at without waiting.
    public var peerHasClosed: Bool { socket.peerHasClosed() }

    /// Sends FIN: the peer sees the end of the request stream; reading goes on.
    public func shutdownWrite() { socket.shutdownWrite() }

    /// Ends with a FIN (unread bytes make the kernel send a reset instead).
    public func close() { socket.close() }

    /// Ends with a reset, as the kernel of a killed client may.
    public func abort() { socket.abort() }
}
