import PlaneCore
import PlaneProxy
import Testing

struct ProxyRouterTests {
    let open = RouteTable.Route(backendID: "foobar", address: "127.0.0.1:20001", bearerToken: nil)
    let guarded = RouteTable.Route(backendID: "secret", address: "127.0.0.1:20002", bearerToken: "foobar")

    var starting: RouteTable.Route {
        var route = RouteTable.Route(backendID: "warming", address: "", bearerToken: "foobar")
        route.isStarting = true
        return route
    }

    func lookup(_ subdomain: String) -> RouteTable.Route? {
        [open, guarded, starting].first { $0.backendID.rawValue == subdomain }
    }

    func decide(_ router: ProxyRouter, host: String?, _ uri: String = "/", authorization: [String] = [], cookies: [String] = []) -> ProxyRouter.Decision {
        router.decide(ProxyRouter.Request(host: host, uri: uri, authorization: authorization, cookies: cookies), lookup: lookup)
    }

    @Test func hostRouting() {
        let router = ProxyRouter(cluster: "plane.test")
        let target = ProxyRouter.Decision.forward(.init(backendID: "foobar", address: "127.0.0.1:20001", uri: "/a?b=c"))
        #expect(decide(router, host: "foobar.plane.test:4040", "/a?b=c") == target)
        #expect(decide(router, host: "FOOBAR.Plane.Test", "/a?b=c") == target)
        #expect(decide(router, host: "foobar.plane.test.", "/a?b=c") == target)
        #expect(decide(router, host: "nothere.plane.test") == .notFound)
        #expect(decide(router, host: "plane.test") == .notFound)
        #expect(decide(router, host: "foobar.other.test") == .notFound)
        #expect(decide(router, host: "foobarplane.test") == .notFound)
        #expect(decide(router, host: nil) == .notFound)
        #expect(decide(router, host: "") == .notFound)
        #expect(decide(router, host: "[::1]:443") == .notFound)
        #expect(router.subdomain(of: "a.b.plane.test") == "a.b")
    }

    @Test func passthroughTakesEveryUnroutedRequest() {
        let router = ProxyRouter(cluster: "plane.test", passthrough: "127.0.0.1:9999")
        let expected = ProxyRouter.Decision.forward(.init(backendID: nil, address: "127.0.0.1:9999", uri: "/x"))
        #expect(decide(router, host: "nothere.plane.test", "/x") == expected)
        #expect(decide(router, host: "plane.test", "/x") == expected)
        #expect(decide(router, host: "elsewhere.example", "/x") == expected)
        #expect(decide(router, host: nil, "/x") == expected)
    }

    @Test func pathRouting() {
        let router = ProxyRouter(cluster: "plane.test", allowPathRouting: true)
        #expect(decide(router, host: "localhost:8080", "/_plane_backend=foobar/socket.io/?EIO=4&transport=polling")
                == .forward(.init(backendID: "foobar", address: "127.0.0.1:20001", uri: "/socket.io/?EIO=4&transport=polling")))
        #expect(decide(router, host: "localhost", "/_plane_backend=foobar") == .forward(.init(backendID: "foobar", address: "127.0.0.1:20001", uri: "/")))
        #expect(decide(router, host: "localhost", "/_plane_backend=foobar?x=1") == .forward(.init(backendID: "foobar", address: "127.0.0.1:20001", uri: "/?x=1")))
        #expect(decide(router, host: "localhost", "/_plane_backend=nothere/") == .notFound)
        #expect(decide(router, host: "localhost", "/_plane_backend=/") == .notFound)
        // Host routing keeps working beside it.
        #expect(decide(router, host: "foobar.plane.test", "/x") == .forward(.init(backendID: "foobar", address: "127.0.0.1:20001", uri: "/x")))
        // Without the setting the prefix is just a path.
        #expect(decide(ProxyRouter(cluster: "plane.test"), host: "localhost", "/_plane_backend=foobar/") == .notFound)
    }

    /// Per-connect access tokens (issue 15) are as good as the bearer token, by header or
    /// cookie; any other value is still 403, and a route without a bearer token is open.
    @Test func accessTokensBesideTheBearerToken() {
        let shared = RouteTable.Route(backendID: "shared", address: "127.0.0.1:20003", bearerToken: "own", accessTokens: ["shared.aaa", "shared.bbb"])
        let router = ProxyRouter(cluster: "plane.test")
        func decide(_ authorization: [String], _ cookies: [String] = []) -> ProxyRouter.Decision {
            router.decide(ProxyRouter.Request(host: "shared.plane.test", uri: "/", authorization: authorization, cookies: cookies)) { $0 == "shared" ? shared : nil }
        }
        let forward = ProxyRouter.Decision.forward(ProxyRouter.Target(backendID: "shared", address: "127.0.0.1:20003", uri: "/"))
        #expect(decide(["Bearer own"]) == forward)
        #expect(decide(["Bearer shared.aaa"]) == forward)
        #expect(decide([], ["_plane_auth=shared.bbb"]) == forward)
        #expect(decide(["Bearer shared.ccc"]) == .forbidden)
        #expect(decide(["Bearer shared.aa"]) == .forbidden)
        #expect(decide([]) == .unauthorized)
        #expect(BearerTokenCheck.check(token: "own", also: ["x"], authorization: ["Bearer x", "Bearer y"], cookies: []) == .allowed)
    }

    @Test func bearerTokens() {
        let router = ProxyRouter(cluster: "plane.test")
        let host = "secret.plane.test"
        let allowed = ProxyRouter.Decision.forward(.init(backendID: "secret", address: "127.0.0.1:20002", uri: "/"))
        #expect(decide(router, host: host) == .unauthorized)
        #expect(decide(router, host: host, authorization: ["Bearer foobar"]) == allowed)
        #expect(decide(router, host: host, authorization: ["bearer foobar"]) == allowed)
        #expect(decide(router, host: host, authorization: ["BEARER   foobar "]) == allowed)
        #expect(decide(router, host: host, authorization: ["Bearer foobaz"]) == .forbidden)
        #expect(decide(router, host: host, authorization: ["Basic Zm9vOmJhcg=="]) == .forbidden)
        #expect(decide(router, host: host, cookies: ["_plane_auth=foobar"]) == allowed)
        #expect(decide(router, host: host, cookies: ["a=b; _plane_auth=foobar ; c=d"]) == allowed)
        #expect(decide(router, host: host, cookies: ["_plane_auth=nope"]) == .forbidden)
        #expect(decide(router, host: host, cookies: ["other=foobar"]) == .unauthorized)
        // A valid cookie is enough even beside a wrong header (v0.3.10 let the header win).
        #expect(decide(router, host: host, authorization: ["Bearer x"], cookies: ["_plane_auth=foobar"]) == allowed)
        // Short and odd values are just wrong, never a crash (v0.3.10 panicked).
        for odd in ["", "B", "Bearer", "Bearer ", "Bearerfoobar", "Bearer\u{0}foobar", "Bearer fööbar", "\u{1F600}"] {
            #expect(decide(router, host: host, authorization: [odd]) == .forbidden, "\(odd.debugDescription)")
        }
        #expect(decide(router, host: host, cookies: ["", ";;;", "=", "_plane_auth", "é=ü; _plane_auth=ö"]) == .forbidden)
    }

    @Test func aStartingBackendIsHeldAfterItsTokenCheck() {
        let router = ProxyRouter(cluster: "plane.test", allowPathRouting: true)
        #expect(decide(router, host: "warming.plane.test") == .unauthorized)
        #expect(decide(router, host: "warming.plane.test", authorization: ["Bearer nope"]) == .forbidden)
        #expect(decide(router, host: "warming.plane.test", authorization: ["Bearer foobar"]) == .hold("warming"))
        #expect(decide(router, host: "other.test", "/_plane_backend=warming/x", cookies: ["_plane_auth=foobar"]) == .hold("warming"))
        // Setting the auth cookie needs no backend.
        #expect(decide(router, host: "warming.plane.test", "/_plane_auth?token=foobar") == .setAuthCookie(token: "foobar", location: "/", cookiePath: "/"))
    }

    @Test func authCookieRedirects() {
        let router = ProxyRouter(cluster: "plane.test", allowPathRouting: true)
        #expect(decide(router, host: "foobar.plane.test", "/_plane_auth?token=foobar") == .setAuthCookie(token: "foobar", location: "/", cookiePath: "/"))
        #expect(decide(router, host: "secret.plane.test", "/_plane_auth?token=foobar&redirect=/blahblah%3Fa%3Db")
                == .setAuthCookie(token: "foobar", location: "/blahblah?a=b", cookiePath: "/"))
        for bad in ["https://evil.example/", "//evil.example/", "/\\evil.example", "relative", "/a%0D%0ASet-Cookie:x=y"] {
            #expect(decide(router, host: "foobar.plane.test", "/_plane_auth?token=t&redirect=\(bad)") == .badRequest(ProxyRouter.invalidRedirectMessage), "\(bad)")
        }
        #expect(decide(router, host: "foobar.plane.test", "/_plane_auth?redirect=/") == .badRequest("Missing token: use /_plane_auth?token=TOKEN&redirect=/path."))
        #expect(decide(router, host: "foobar.plane.test", "/_plane_auth?token=a%3Bb") == .badRequest("The token contains characters a cookie cannot carry."))
        #expect(decide(router, host: "foobar.plane.test", "/_plane_auth?token=%zz") == .badRequest("Missing token: use /_plane_auth?token=TOKEN&redirect=/path."))
        // Path routing: the cookie is scoped to the backend's prefix, the redirect stays under it.
        #expect(decide(router, host: "localhost", "/_plane_backend=secret/_plane_auth?token=foobar&redirect=/x")
                == .setAuthCookie(token: "foobar", location: "/_plane_backend=secret/x", cookiePath: "/_plane_backend=secret/"))
        // Only for routed hosts.
        #expect(decide(router, host: "nothere.plane.test", "/_plane_auth?token=foobar") == .notFound)
    }
}
