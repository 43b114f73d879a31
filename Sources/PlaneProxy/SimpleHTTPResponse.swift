import NIOCore
import NIOHTTP1

/// A complete small response written at once (the redirect listener, the metrics
/// endpoint): `Content-Length` set, `Connection: close` and a close after it unless the
/// request was keep-alive.
enum SimpleHTTPResponse {
    static func write(_ status: HTTPResponseStatus, headers extra: [(String, String)] = [], body: String = "", contentType: String? = nil,
                      version: HTTPVersion = .http1_1, keepAlive: Bool, context: ChannelHandlerContext) {
        var head = HTTPResponseHead(version: version, status: status)
        for (name, value) in extra { head.headers.add(name: name, value: value) }
        if let contentType { head.headers.add(name: "Content-Type", value: contentType) }
        head.headers.add(name: "Content-Length", value: String(body.utf8.count))
        if !keepAlive { head.headers.add(name: "Connection", value: "close") }
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if !body.isEmpty { context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil) }
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}
