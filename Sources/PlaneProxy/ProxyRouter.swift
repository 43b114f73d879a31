import PlaneCore

/// Where a request goes (spec §6.2 with v0.3.10's gaps fixed), decided without I/O:
///
/// 1. With `allow_path_routing`, a path `/_plane_backend={backend}/rest` goes to that
///    backend as `/rest` (query kept), whatever the Host.
/// 2. Otherwise the Host (port and a trailing dot dropped, any case) must end with
///    `.{cluster}`; the part before is the subdomain, whose route must exist (a `Ready`
///    backend).
/// 3. `/_plane_auth?token=&redirect=` on a routed host sets the `_plane_auth` cookie and
///    redirects to the relative `redirect` (400 for an absolute one or without `token`).
/// 4. A route with a bearer token needs it (`BearerTokenCheck`): 401 without, 403 wrong.
/// 5. A backend that is still starting (`Loading` or `Starting`): the request is held
///    until it is Ready (`hold`), after the token check.
/// 6. No route: the passthrough upstream if configured (for any Host, also the bare
///    cluster domain), else 404.
public struct ProxyRouter: Sendable {
    /// The request facts routing needs.
    public struct Request: Sendable {
        public var host: String?
        public var uri: String
        public var authorization: [String]
        public var cookies: [String]

        public init(host: String?, uri: String, authorization: [String] = [], cookies: [String] = []) {
            self.host = host
            self.uri = uri
            self.authorization = authorization
            self.cookies = cookies
        }
    }

    public struct Target: Sendable, Hashable {
        /// Nil for the passthrough upstream.
        public var backendID: BackendID?
        /// `host:port` to connect to.
        public var address: String
        /// The request target sent upstream.
        public var uri: String

        public init(backendID: BackendID?, address: String, uri: String) {
            self.backendID = backendID
            self.address = address
            self.uri = uri
        }
    }

    public enum Decision: Sendable, Hashable {
        case forward(Target)
        /// The backend is starting: hold the request until it is Ready, then decide again.
        case hold(BackendID)
        /// 404, empty body, `Access-Control-Allow-Origin: *`.
        case notFound
        /// 401 `Expected bearer token.`
        case unauthorized
        /// 403, empty body.
        case forbidden
        /// 400 with this body.
        case badRequest(String)
        /// 302 to `location` with `Set-Cookie: _plane_auth={token}; Path={cookiePath}; ...`.
        case setAuthCookie(token: String, location: String, cookiePath: String)
    }

    public static let pathPrefix = "/_plane_backend="
    public static let authPath = "/_plane_auth"
    public static let invalidRedirectMessage = "Redirect must be relative and start with a slash."

    /// The cluster domain, lower case.
    public let cluster: String
    public let allowPathRouting: Bool
    public let passthrough: String?

    /// `.{cluster}`.
    private let clusterSuffix: String

    public init(cluster: String, allowPathRouting: Bool = false, passthrough: String? = nil) {
        self.cluster = cluster.lowercased()
        clusterSuffix = "." + self.cluster
        self.allowPathRouting = allowPathRouting
        self.passthrough = passthrough
    }

    public func decide(_ request: Request, lookup: (String) -> RouteTable.Route?) -> Decision {
        decide(request, subdomain: subdomain(of: request.host), lookup: lookup)
    }

    /// `decide` with the Host's subdomain already found (`subdomain(ofHost:)`: the proxy
    /// reads it from the head's bytes, without making a `String` of the whole Host).
    func decide(_ request: Request, subdomain: String?, lookup: (String) -> RouteTable.Route?) -> Decision {
        let (path, query) = Self.split(request.uri)
        // 1. Path routing.
        if allowPathRouting, path.hasPrefix(Self.pathPrefix) {
            let afterPrefix = path.dropFirst(Self.pathPrefix.count)
            let backend = afterPrefix.prefix { $0 != "/" }
            var rest = String(afterPrefix.dropFirst(backend.count))
            if rest.isEmpty { rest = "/" }
            guard !backend.isEmpty, let route = lookup(String(backend)) else { return noRoute(request) }
            let base = Self.pathPrefix + backend
            return routed(route, path: rest, query: query, request: request, cookiePath: base + "/", locationPrefix: base)
        }
        // 2. Host routing.
        guard let subdomain, let route = lookup(subdomain) else { return noRoute(request) }
        return routed(route, path: path, query: query, request: request, cookiePath: "/", locationPrefix: "")
    }

    /// The subdomain of a Host under the cluster domain, nil otherwise.
    /// On the request path: works on the bytes, allocates at most the result.
    public func subdomain(of host: String?) -> String? {
        guard var host else { return nil }
        return host.withUTF8 { subdomain(ofHost: UnsafeRawBufferPointer($0)) }
    }

    /// `subdomain(of:)` for the bytes of a Host value.
    func subdomain(ofHost name: UnsafeRawBufferPointer) -> String? {
        clusterSuffix.utf8.withContiguousStorageIfAvailable { suffix -> String? in
            // An IPv6 literal is never under the cluster domain.
            guard name.first != UInt8(ascii: "[") else { return nil }
            var end = name.count
            if let colon = name.lastIndex(of: UInt8(ascii: ":")) { end = colon }
            if end > 0, name[end - 1] == UInt8(ascii: ".") { end -= 1 }
            guard end > suffix.count else { return nil }
            let labelEnd = end - suffix.count
            var hasUpper = false
            for index in 0..<suffix.count where Self.lowercase(name[labelEnd + index]) != suffix[index] { return nil }
            for index in 0..<labelEnd where name[index] >= 0x41 && name[index] <= 0x5A { hasUpper = true }
            let label = String(decoding: UnsafeRawBufferPointer(rebasing: name[0..<labelEnd]), as: UTF8.self)
            return hasUpper ? label.lowercased() : label
        } ?? nil
    }

    private static func lowercase(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }

    private func routed(_ route: RouteTable.Route, path: String, query: Substring?, request: Request, cookiePath: String, locationPrefix: String) -> Decision {
        if path == Self.authPath {
            return authCookie(query: query, cookiePath: cookiePath, locationPrefix: locationPrefix)
        }
        if let token = route.bearerToken {
            switch BearerTokenCheck.check(token: token, also: route.accessTokens, authorization: request.authorization, cookies: request.cookies) {
            case .allowed: break
            case .missing: return .unauthorized
            case .wrong: return .forbidden
            }
        }
        if route.isStarting { return .hold(route.backendID) }
        let uri = query.map { path + "?" + $0 } ?? path
        return .forward(Target(backendID: route.backendID, address: route.address, uri: uri))
    }

    private func noRoute(_ request: Request) -> Decision {
        guard let passthrough else { return .notFound }
        return .forward(Target(backendID: nil, address: passthrough, uri: request.uri))
    }

    private func authCookie(query: Substring?, cookiePath: String, locationPrefix: String) -> Decision {
        let parameters = Self.queryParameters(query)
        guard let token = parameters["token"], !token.isEmpty else {
            return .badRequest("Missing token: use /_plane_auth?token=TOKEN&redirect=/path.")
        }
        guard token.utf8.allSatisfy(Self.isCookieValueByte) else {
            return .badRequest("The token contains characters a cookie cannot carry.")
        }
        let redirect = parameters["redirect"] ?? "/"
        // Relative means one leading slash: `//host` and `/\host` are other sites to a browser.
        guard redirect.hasPrefix("/"), !redirect.hasPrefix("//"), !redirect.hasPrefix("/\\"),
              !redirect.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            return .badRequest(Self.invalidRedirectMessage)
        }
        return .setAuthCookie(token: token, location: locationPrefix + redirect, cookiePath: cookiePath)
    }

    // MARK: Parsing helpers

    static func split(_ uri: String) -> (path: String, query: Substring?) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, nil) }
        return (String(uri[..<mark]), uri[uri.index(after: mark)...])
    }

    /// `host`, `host:port`, `[v6]`, `[v6]:port` → the host part.
    static func stripPort(_ host: String) -> String {
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return host }
            return String(host[...close])
        }
        guard let colon = host.lastIndex(of: ":") else { return host }
        return String(host[..<colon])
    }

    /// `application/x-www-form-urlencoded` query parameters (first value wins).
    static func queryParameters(_ query: Substring?) -> [String: String] {
        var result: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecode(parts[0]) else { continue }
            let value = parts.count > 1 ? percentDecode(parts[1]) : ""
            if result[name] == nil, let value { result[name] = value }
        }
        return result
    }

    static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"): bytes.append(0x20)
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }

    /// RFC 6265 cookie-octet.
    static func isCookieValueByte(_ byte: UInt8) -> Bool {
        byte == 0x21 || (0x23...0x2B).contains(byte) || (0x2D...0x3A).contains(byte) || (0x3C...0x5B).contains(byte) || (0x5D...0x7E).contains(byte)
    }
}
