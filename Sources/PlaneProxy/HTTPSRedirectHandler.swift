import NIOCore
import NIOHTTP1

/// The plain-HTTP listener next to the TLS one: every request is answered with a
/// `308 Permanent Redirect` to the same host and path on HTTPS.
final class HTTPSRedirectHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart

    private let httpsPort: Int
    private var head: HTTPRequestHead?

    init(httpsPort: Int) { self.httpsPort = httpsPort }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            if let host = head.headers.first(name: "host").map(ProxyRouter.stripPort), !host.isEmpty,
               !host.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }), head.uri.hasPrefix("/") {
                let port = httpsPort == 443 ? "" : ":\(httpsPort)"
                SimpleHTTPResponse.write(.permanentRedirect, headers: [("Location", "https://\(host)\(port)\(head.uri)")], version: head.version,
                                         keepAlive: head.isKeepAlive, context: context)
            } else {
                SimpleHTTPResponse.write(.badRequest, version: head.version, keepAlive: head.isKeepAlive, context: context)
            }
        }
    }

    /// Bytes that are not HTTP: NIO's error handler has answered 400 with `Connection:
    /// close`; the close is ours (left open, the connection would take and drop whatever
    /// the client sends until the request timeout).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
