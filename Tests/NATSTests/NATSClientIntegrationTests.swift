import Foundation
import NIOCore
import PlaneTestSupport
import Testing
@testable import NATS

/// Against a real nats-server started by the test on a random loopback port.
@Suite(.timeLimit(.minutes(2)))
struct NATSClientIntegrationTests {
    @Test func publishSubscribeAndWildcards() async throws {
        try await withNATSServer { server in
            let a = try await server.connectedClient(), b = try await server.connectedClient()
            let exact = try await a.subscribe(to: "greet.joe")
            let star = try await a.subscribe(to: "greet.*")
            let full = try await a.subscribe(to: "greet.>")
            try await b.publish("greet.joe", payload: Array("hello".utf8))
            try await b.publish("greet.joe.deep", payload: Array("deep".utf8))
            try await b.flush()
            var it1 = exact.makeAsyncIterator(), it2 = star.makeAsyncIterator(), it3 = full.makeAsyncIterator()
            #expect(await it1.next()?.string == "hello")
            #expect(await it2.next()?.string == "hello")
            #expect(await it3.next()?.string == "hello")
            let deep = await it3.next()
            #expect(deep?.string == "deep" && deep?.subject == "greet.joe.deep")
            await a.close(); await b.close()
        }
    }

    @Test func requestReplyNoRespondersAndTimeout() async throws {
        try await withNATSServer { server in
            let responder = try await server.connectedClient(), requester = try await server.connectedClient()
            let service = try await responder.subscribe(to: "echo")
            let task = Task {
                for await message in service {
                    guard let reply = message.replyTo else { continue }
                    try await responder.publish(reply, payload: Array("re: \(message.string)".utf8))
                }
            }
            for i in 0..<20 {
                #expect(try await requester.request("echo", payload: Array("\(i)".utf8)).string == "re: \(i)")
            }
            // Many concurrent requests share the one inbox.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<50 {
                    group.addTask {
                        let reply = try await requester.request("echo", payload: Array("c\(i)".utf8))
                        #expect(reply.string == "re: c\(i)")
                    }
                }
                try await group.waitForAll()
            }
            let noResponders = try await #require(throws: NATSError.self) { try await requester.request("nobody.home") }
            #expect(noResponders.code == .noResponders)
            let silent = try await responder.subscribe(to: "silent")
            let timeout = try await #require(throws: NATSError.self) { try await requester.request("silent", timeout: .milliseconds(200)) }
            #expect(timeout.code == .timeout)
            // After unsubscribing, nobody answers any more.
            try silent.unsubscribe()
            try await responder.flush()
            let gone = try await #require(throws: NATSError.self) { try await requester.request("silent", timeout: .seconds(2)) }
            #expect(gone.code == .noResponders)
            task.cancel()
            await responder.close(); await requester.close()
        }
    }

    @Test func queueGroupDeliversEachMessageOnce() async throws {
        try await withNATSServer { server in
            let c1 = try await server.connectedClient(), c2 = try await server.connectedClient(), publisher = try await server.connectedClient()
            let s1 = try await c1.subscribe(to: "work", queue: "workers")
            let s2 = try await c2.subscribe(to: "work", queue: "workers")
            let count = 200
            for i in 0..<count { try await publisher.publish("work", payload: Array("\(i)".utf8)) }
            try await publisher.flush()
            try await c1.flush(); try await c2.flush()
            try await Task.sleep(for: .milliseconds(200))
            try s1.unsubscribe(); try s2.unsubscribe()
            var seen: [String] = []
            for await m in s1 { seen.append(m.string) }
            let fromFirst = seen.count
            for await m in s2 { seen.append(m.string) }
            #expect(seen.count == count)
            #expect(Set(seen).count == count)
            #expect(fromFirst > 0 && fromFirst < count, "both members got work")
            await c1.close(); await c2.close(); await publisher.close()
        }
    }

    @Test func headersRoundTrip() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let sub = try await client.subscribe(to: "h")
            var headers: NATSHeaders = ["Nats-Msg-Id": "id-1", "X-Trace": "a b c"]
            headers.append("X-Trace", "second")
            try await client.publish("h", payload: Array("body".utf8), headers: headers)
            var it = sub.makeAsyncIterator()
            let message = try #require(await it.next())
            #expect(message.headers == headers)
            #expect(message.string == "body")
            await client.close()
        }
    }

    @Test func unsubscribeAfterMax() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let sub = try await client.subscribe(to: "m")
            try sub.unsubscribe(after: 3)
            for i in 0..<10 { try await client.publish("m", payload: Array("\(i)".utf8)) }
            var got: [String] = []
            for await m in sub { got.append(m.string) }
            #expect(got == ["0", "1", "2"])
            await client.close()
        }
    }

    @Test func slowConsumerIsReportedAndBounded() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let events = client.events()
            let sub = try await client.subscribe(to: "flood", bufferSize: 10)
            for _ in 0..<200 { try await client.publish("flood", payload: [1, 2, 3]) }
            try await client.flush()
            try await Task.sleep(for: .milliseconds(100))
            #expect(sub.droppedCount == 190)
            var sawEvent = false
            for await event in events {
                if case .slowConsumer(let subject, _, _) = event, subject == "flood" { sawEvent = true; break }
            }
            #expect(sawEvent)
            var delivered = 0
            try sub.unsubscribe()
            for await _ in sub { delivered += 1 }
            #expect(delivered == 10)
            await client.close()
        }
    }

    /// A subscription holds at most `subscriptionBufferBytes` for a consumer that does not
    /// read: large messages beyond it are dropped and reported (each message alone would
    /// fit the message count many times over); once the consumer reads, there is room again.
    @Test func slowConsumerIsBoundedInBytes() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient { $0.subscriptionBufferBytes = 256 * 1024 }
            let publisher = try await server.connectedClient()
            let sub = try await client.subscribe(to: "large")
            let payload = [UInt8](repeating: 7, count: 40 * 1024)
            // Six fit into 256 KiB; the other 24 are dropped.
            for _ in 0..<30 { try await publisher.publish("large", payload: payload) }
            try await publisher.flush()
            #expect(try await eventually(timeout: .seconds(10)) { sub.droppedCount == 24 })
            var iterator = sub.makeAsyncIterator()
            for _ in 0..<6 { #expect(await iterator.next()?.payload.readableBytes == payload.count) }
            #expect(sub.backlog.count == 0, "every message taken gave its room back")
            // Read, the room is back: the next ones arrive whole.
            for _ in 0..<5 { try await publisher.publish("large", payload: payload) }
            try await publisher.flush()
            for _ in 0..<5 { #expect(await iterator.next()?.payload.readableBytes == payload.count) }
            #expect(sub.droppedCount == 24)
            // A message larger than the whole limit still reaches a consumer that has taken
            // everything before it.
            try await publisher.publish("large", payload: [UInt8](repeating: 1, count: 512 * 1024))
            try await publisher.flush()
            #expect(await iterator.next()?.payload.readableBytes == 512 * 1024)
            #expect(sub.droppedCount == 24)
            await client.close(); await publisher.close()
        }
    }

    @Test func survivesServerRestartAndRestoresSubscriptions() async throws {
        try await withNATSServer { server in
            let subscriber = try await server.connectedClient()
            let publisher = try await server.connectedClient()
            let events = subscriber.events()
            let sub = try await subscriber.subscribe(to: "after.restart")
            let queueSub = try await subscriber.subscribe(to: "after.restart.q", queue: "g")
            await server.kill9()
            // Published while the server is down: buffered, sent after reconnect.
            try await publisher.publish("after.restart", payload: Array("buffered".utf8))
            try await server.startAgain()
            var reconnected = false
            for await event in events { if case .reconnected = event { reconnected = true; break } }
            #expect(reconnected)
            // Wait for the publisher to be back too.
            let deadline = ContinuousClock.now + .seconds(10)
            while !publisher.isConnected, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await subscriber.flush()
            try await publisher.publish("after.restart", payload: Array("fresh".utf8))
            try await publisher.publish("after.restart.q", payload: Array("queued".utf8))
            var it = sub.makeAsyncIterator(), qit = queueSub.makeAsyncIterator()
            var got: [String] = []
            while got.count < 2, let m = await it.next() { got.append(m.string); if got.last == "fresh" { break } }
            #expect(got.contains("fresh"))
            #expect(await qit.next()?.string == "queued")
            // Request/reply works again over the restored inbox.
            let svc = try await subscriber.subscribe(to: "svc")
            let responder = Task { for await m in svc { if let r = m.replyTo { try await subscriber.publish(r, payload: Array("ok".utf8)) } } }
            #expect(try await publisher.request("svc").string == "ok")
            responder.cancel()
            await subscriber.close(); await publisher.close()
        }
    }

    @Test func failsOverToTheNextServerOfTheList() async throws {
        var options = NATSServerProcess.Options()
        options.jetStream = false
        try await withNATSServer(options) { first in
            try await withNATSServer(options) { second in
                var config = first.clientConfiguration()
                config.servers = [first.serverURL, second.serverURL]
                let client = try NATSClient(configuration: config)
                try await client.connect()
                #expect(client.connectedServer?.port == first.port)
                let sub = try await client.subscribe(to: "failover")
                let events = client.events()
                await first.stop()
                for await event in events { if case .reconnected = event { break } }
                #expect(client.connectedServer?.port == second.port)
                // The subscription now lives on the second server.
                let other = try NATSClient(configuration: second.clientConfiguration())
                try await other.connect()
                try await client.flush()
                try await other.publish("failover", payload: Array("moved".utf8))
                var it = sub.makeAsyncIterator()
                #expect(await it.next()?.string == "moved")
                await other.close(); await client.close()
            }
        }
    }

    @Test func reconnectBufferIsBounded() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient { $0.reconnectBufferSize = 1024; $0.reconnectWait = .seconds(5); $0.maxReconnectWait = .seconds(5) }
            await server.kill9()
            let deadline = ContinuousClock.now + .seconds(10)
            while client.isConnected, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            try await client.publish("x", payload: [UInt8](repeating: 0, count: 500))
            let error = try await #require(throws: NATSError.self) {
                for _ in 0..<10 { try await client.publish("x", payload: [UInt8](repeating: 0, count: 500)) }
            }
            #expect(error.code == .reconnectBufferFull)
            #expect(error.message.contains("reconnect buffer"))
            await client.close()
        }
    }

    @Test func wrongTokenIsAClearError() async throws {
        var options = NATSServerProcess.Options()
        options.token = "right-token"
        try await withNATSServer(options) { server in
            var config = server.clientConfiguration()
            config.auth = .token("wrong-token")
            let client = try NATSClient(configuration: config)
            let error = try await #require(throws: NATSError.self) { try await client.connect() }
            #expect(error.code == .authorizationFailed)
            #expect(error.message.contains("refused the credentials"))
            let good = try await server.connectedClient()
            #expect(good.isConnected)
            await good.close()
        }
    }

    @Test func wrongPasswordIsAClearErrorAndRightOneWorks() async throws {
        var options = NATSServerProcess.Options()
        options.user = "plane"
        options.password = "secret"
        try await withNATSServer(options) { server in
            var config = server.clientConfiguration()
            config.auth = .userPassword(user: "plane", password: "nope")
            let error = try await #require(throws: NATSError.self) { try await NATSClient(configuration: config).connect() }
            #expect(error.code == .authorizationFailed)
            let client = try await server.connectedClient()
            let sub = try await client.subscribe(to: "auth.ok")
            try await client.publish("auth.ok", payload: [1])
            var it = sub.makeAsyncIterator()
            #expect(await it.next()?.bytes == [1])
            // Credentials in the URL work too.
            let viaURL = try NATSClient(configuration: NATSClientConfiguration(urls: ["nats://plane:secret@127.0.0.1:\(server.port)"]))
            try await viaURL.connect()
            #expect(viaURL.isConnected)
            await viaURL.close(); await client.close()
        }
    }

    /// A TLS cluster whose certificate names its host (`localhost`) and no address, as
    /// certificates usually do, while its servers advertise themselves by address
    /// (`127.0.0.1:port`): once the configured server is gone, the client reconnects to an
    /// advertised one and checks its certificate against the configured host's name (as
    /// nats.go does). Checked against the address, the certificate fails and the client
    /// could reach no server of its cluster.
    @Test func advertisedServersAreVerifiedAsTheirClusterIsNamed() async throws {
        let dir = try TestEnvironment.temporaryDirectory("plane-tls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let certs = try await TestCertificates.generate(in: dir, names: ["DNS:localhost"])
        let servers = try await NATSServerProcess.startCluster(size: 2) { options in
            options.tls = (certs.serverCertificate, certs.serverKey, certs.caCertificate)
            options.clientHost = "localhost"
        }
        var config = servers[0].clientConfiguration(tlsCA: certs.caCertificate)
        config.reconnectWait = .milliseconds(50)
        config.maxReconnectWait = .milliseconds(200)
        let client = try NATSClient(configuration: config)
        do {
            let events = client.events()
            try await client.connect()
            await servers[0].kill9()
            let reconnectedTo: String? = await withTaskGroup(of: String?.self) { group in
                group.addTask {
                    for await event in events {
                        if case .reconnected(let server) = event { return server }
                    }
                    return nil
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(20))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            try #require(reconnectedTo == "tls://127.0.0.1:\(servers[1].port)", "the client did not reach the advertised server")
            // And it works there.
            let sub = try await client.subscribe(to: "after")
            try await client.publish("after", payload: Array("ok".utf8))
            var it = sub.makeAsyncIterator()
            #expect(await it.next()?.string == "ok")
        } catch {
            await client.close()
            for server in servers { await server.shutdown() }
            throw error
        }
        await client.close()
        for server in servers { await server.shutdown() }
    }

    @Test func tlsConnectionWithCustomCA() async throws {
        let dir = try TestEnvironment.temporaryDirectory("plane-tls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let certs = try await TestCertificates.generate(in: dir)
        var options = NATSServerProcess.Options()
        options.tls = (certs.serverCertificate, certs.serverKey, certs.caCertificate)
        options.jetStream = false
        let server = try await NATSServerProcess.start(options)
        do {
            let client = try NATSClient(configuration: server.clientConfiguration(tlsCA: certs.caCertificate))
            try await client.connect()
            let sub = try await client.subscribe(to: "secure")
            try await client.publish("secure", payload: Array("tls".utf8))
            var it = sub.makeAsyncIterator()
            #expect(await it.next()?.string == "tls")
            await client.close()
            // Without the CA the server certificate is not trusted.
            var untrusted = server.clientConfiguration()
            untrusted.tls = .init(caFile: nil, required: true)
            untrusted.connectTimeout = .seconds(2)
            let error = try await #require(throws: NATSError.self) { try await NATSClient(configuration: untrusted).connect() }
            #expect(error.code == .tlsFailed || error.code == .connectionFailed)
            await server.shutdown()
        } catch {
            await server.shutdown()
            throw error
        }
    }

    @Test func unreachableServerIsAClearError() async throws {
        let port = try TestEnvironment.freePort()
        let client = try NATSClient(configuration: NATSClientConfiguration(urls: ["nats://127.0.0.1:\(port)"]))
        let error = try await #require(throws: NATSError.self) { try await client.connect() }
        #expect(error.code == .connectionFailed)
        #expect(error.message.contains("127.0.0.1:\(port)"))
        #expect(error.message.contains("Is nats-server running"))
    }

    @Test func drainDeliversWhatWasInFlight() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient(), publisher = try await server.connectedClient()
            let sub = try await client.subscribe(to: "d")
            for i in 0..<100 { try await publisher.publish("d", payload: Array("\(i)".utf8)) }
            try await publisher.flush()
            await client.drain()
            var count = 0
            for await _ in sub { count += 1 }
            #expect(count == 100)
            let error = try await #require(throws: NATSError.self) { try await client.publish("d", payload: [1]) }
            #expect(error.code == .closed)
            await publisher.close()
        }
    }

    @Test func invalidSubjectsAreRejected() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            for bad in ["", "a b", "a\r\nPUB x 1"] {
                let error = try await #require(throws: NATSError.self) { try await client.publish(bad, payload: [1]) }
                #expect(error.code == .invalidArgument)
            }
            let big = [UInt8](repeating: 0, count: (client.serverInfo?.maxPayload ?? 1_048_576) + 1)
            let error = try await #require(throws: NATSError.self) { try await client.publish("big", payload: big) }
            #expect(error.code == .payloadTooLarge)
            #expect(client.isConnected)
            await client.close()
        }
    }
}
