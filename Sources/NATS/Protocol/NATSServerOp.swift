import NIOCore

/// One operation received from the server.
public enum NATSServerOp: Sendable, Equatable {
    case info(NATSServerInfo)
    case msg(NATSMessage)
    case ping
    case pong
    case ok
    case err(String)
}
