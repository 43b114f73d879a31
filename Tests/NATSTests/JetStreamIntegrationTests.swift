import Foundation
import PlaneTestSupport
import Testing
@testable import NATS

@Suite(.timeLimit(.minutes(3)))
struct JetStreamIntegrationTests {
    @Test func streamLifecycle() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let js = JetStream(client: client)
            #expect(try await js.streamInfo("orders") == nil)
            var config = StreamConfiguration(name: "orders", subjects: ["orders.*"])
            config.storage = .file
            let created = try await js.createStream(config)
            #expect(created.config.subjects == ["orders.*"])
            #expect(created.state.messages == 0)
            // Get-or-create leaves the existing stream alone.
            var other = config
            other.subjects = ["different.*"]
            #expect(try await js.ensureStream(other).config.subjects == ["orders.*"])
            config.maxMessagesPerSubject = 5
            #expect(try await js.updateStream(config).config.maxMessagesPerSubject == 5)
            let ack1 = try await js.publish("orders.1", payload: Array("a".utf8))
            let ack2 = try await js.publish("orders.2", payload: Array("b".utf8))
            #expect(ack1.stream == "orders" && ack1.sequence == 1 && ack2.sequence == 2)
            #expect(try await js.streamInfo("orders")?.state.messages == 2)
            #expect(try await js.lastMessage(stream: "orders", subject: "orders.2")?.string == "b")
            #expect(try await js.lastMessage(stream: "orders", subject: "orders.9") == nil)
            let dup = try await js.publish("orders.1", payload: Array("a".utf8), messageID: "m1")
            let dup2 = try await js.publish("orders.1", payload: Array("a".utf8), messageID: "m1")
            #expect(!dup.duplicate && dup2.duplicate && dup2.sequence == dup.sequence)
            let nowhere = try await #require(throws: NATSError.self) { try await js.publish("nobody.stores.this", payload: [1]) }
            #expect(nowhere.code == .jetStream && nowhere.message.contains("No JetStream stream stores"))
            let conflict = try await #require(throws: NATSError.self) { try await js.publish("orders.1", payload: [1], expectedLastSubjectSequence: 1) }
            #expect(conflict.code == .wrongLastSequence)
            try await js.deleteStream("orders")
            #expect(try await js.streamInfo("orders") == nil)
            let bad = try await #require(throws: NATSError.self) { try await js.createStream(StreamConfiguration(name: "bad.name")) }
            #expect(bad.code == .invalidArgument)
            await client.close()
        }
    }

    @Test func orderedConsumerReplaysFromTheStartThenFollows() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let js = JetStream(client: client)
            _ = try await js.createStream(StreamConfiguration(name: "status", subjects: ["backend.*.status"]))
            for i in 1...30 {
                _ = try await js.publish("backend.b\(i % 3).status", payload: Array("\(i)".utf8))
            }
            // Filtered replay: only b1's messages, in order, with pending reaching 0.
            let consumer = try await js.orderedConsumer(stream: "status", options: OrderedConsumerOptions(filterSubject: "backend.b1.status"))
            #expect(consumer.initialPending == 10)
            var got: [String] = []
            var it = consumer.makeAsyncIterator()
            while let m = try await it.next() {
                got.append(m.string)
                if m.pending == 0 { break }
            }
            #expect(got == stride(from: 1, through: 30, by: 3).map { "\($0)" })
            _ = try await js.publish("backend.b1.status", payload: Array("live".utf8))
            #expect(try await it.next()?.string == "live")
            consumer.stop()
            // An empty replay reports nothing pending.
            let empty = try await js.orderedConsumer(stream: "status", options: OrderedConsumerOptions(filterSubject: "backend.none.status"))
            #expect(empty.initialPending == 0)
            empty.stop()
            await client.close()
        }
    }

    /// A reader that does not read holds the server back through flow control: what the
    /// consumer buffers stops growing near its limit (plus the server's window) however much
    /// the stream holds; once it reads, everything arrives, in order, without a gap.
    @Test func aSlowReaderHoldsTheServerBack() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let js = JetStream(client: client)
            _ = try await js.createStream(StreamConfiguration(name: "bulk", subjects: ["bulk.>"]))
            let payload = [UInt8](repeating: 0x5A, count: 64 * 1024)
            let count = 400  // 25 MiB
            for i in 0..<count { try await client.publish("bulk.\(i % 4)", payload: payload) }
            try await client.flush()
            #expect(try await eventually(timeout: .seconds(30)) { try await js.streamInfo("bulk")?.state.messages == UInt64(count) })
            var options = OrderedConsumerOptions(filterSubject: "bulk.>")
            options.maxBufferedBytes = 1024 * 1024
            // Short heartbeats: the server's "stalled" heartbeats keep the held-back consumer
            // alive (were it taken for dead and recreated, each new one would add a window).
            options.idleHeartbeat = .milliseconds(300)
            let consumer = try await js.orderedConsumer(stream: "bulk", options: options)
            // Let it fill what it may, then wait through several heartbeat periods.
            var before = -1
            while consumer.backlog.bytes != before {
                before = consumer.backlog.bytes
                try await Task.sleep(for: .milliseconds(500))
            }
            try await Task.sleep(for: .seconds(3))
            #expect(consumer.backlog.bytes == before && before < 6 * 1024 * 1024, "\(consumer.backlog.bytes) bytes buffered for a reader that reads nothing")
            var iterator = consumer.makeAsyncIterator()
            var sequences: [UInt64] = []
            while sequences.count < count, let message = try await iterator.next() {
                #expect(message.payload.count == payload.count)
                sequences.append(message.streamSequence)
            }
            #expect(sequences == Array(1...UInt64(count)))
            #expect(consumer.backlog.bytes == 0)
            consumer.stop()
            await client.close()
        }
    }

    @Test func noAckedMessageIsLostAcrossAServerRestart() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let js = JetStream(client: client)
            _ = try await js.createStream(StreamConfiguration(name: "events", subjects: ["events.>"]))
            var options = OrderedConsumerOptions(filterSubject: "events.>")
            options.idleHeartbeat = .milliseconds(300)
            let consumer = try await js.orderedConsumer(stream: "events", options: options)
            var acked: [UInt64] = []
            for i in 0..<50 { acked.append(try await js.publish("events.a", payload: Array("\(i)".utf8)).sequence) }
            await server.kill9()
            try await server.startAgain()
            // Publish more once JetStream accepts again (it may take a moment after a restart).
            var i = 50
            let deadline = ContinuousClock.now + .seconds(60)
            while i < 100, ContinuousClock.now < deadline {
                do {
                    acked.append(try await js.publish("events.a", payload: Array("\(i)".utf8)).sequence)
                    i += 1
                } catch {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(acked.count == 100)
            // The consumer that lived through the restart delivers every acked message once, in order.
            var seen: [String] = []
            for try await m in consumer {
                seen.append(m.string)
                if seen.count == 100 { break }
            }
            #expect(seen == (0..<100).map { "\($0)" })
            consumer.stop()
            // So does a fresh replay.
            let replay = try await js.orderedConsumer(stream: "events")
            #expect(replay.initialPending == 100)
            replay.stop()
            await client.close()
        }
    }

    @Test func keyValueOperations() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let js = JetStream(client: client)
            var config = KeyValueConfiguration(bucket: "locks")
            config.history = 5
            let kv = try await js.keyValue(config)
            #expect(try await kv.get("a") == nil)
            let r1 = try await kv.put("a", value: Array("1".utf8))
            #expect(try await kv.get("a")?.string == "1")
            #expect(try await kv.get("a")?.revision == r1)
            let exists = try await #require(throws: NATSError.self) { try await kv.create("a", value: Array("x".utf8)) }
            #expect(exists.code == .wrongLastSequence)
            let r2 = try await kv.update("a", value: Array("2".utf8), revision: r1)
            let stale = try await #require(throws: NATSError.self) { try await kv.update("a", value: Array("3".utf8), revision: r1) }
            #expect(stale.code == .wrongLastSequence)
            // Conditional delete only with the current revision.
            await #expect(throws: NATSError.self) { try await kv.delete("a", revision: r1) }
            try await kv.delete("a", revision: r2)
            #expect(try await kv.get("a") == nil)
            // A deleted key can be created again.
            let r3 = try await kv.create("a", value: Array("again".utf8))
            #expect(r3 > r2)
            try await kv.put("b/c=d.e_f-g", value: Array("odd".utf8))
            try await kv.put("gone", value: [1])
            try await kv.purge("gone")
            #expect(try await kv.get("gone") == nil)
            #expect(try await kv.keys() == ["a", "b/c=d.e_f-g"])
            await #expect(throws: NATSError.self) { try await kv.put("bad key", value: [1]) }
            // Reopening finds the same bucket.
            #expect(try await js.existingKeyValue("locks").get("a")?.string == "again")
            await #expect(throws: NATSError.self) { try await js.existingKeyValue("nope") }
            await client.close()
        }
    }

    @Test func keyValueWatchDeliversInitialValuesThenChanges() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let kv = try await JetStream(client: client).keyValue(KeyValueConfiguration(bucket: "w"))
            try await kv.put("x", value: Array("old".utf8))
            try await kv.put("x", value: Array("current".utf8))
            try await kv.put("y", value: Array("y1".utf8))
            var events = try await kv.watch().makeAsyncIterator()
            var initial: [String: String] = [:]
            while let event = try await events.next() {
                if case .entry(let e) = event { initial[e.key] = e.string }
                if event == .caughtUp { break }
            }
            #expect(initial == ["x": "current", "y": "y1"])
            try await kv.put("z", value: Array("new".utf8))
            try await kv.delete("x")
            guard case .entry(let z) = try await events.next() else { Issue.record("expected an entry"); return }
            #expect(z.key == "z" && z.string == "new" && z.operation == .put)
            guard case .entry(let x) = try await events.next() else { Issue.record("expected an entry"); return }
            #expect(x.key == "x" && x.operation == .delete)
            // An empty bucket is caught up at once.
            let empty = try await JetStream(client: client).keyValue(KeyValueConfiguration(bucket: "empty"))
            var emptyEvents = try await empty.watch().makeAsyncIterator()
            #expect(try await emptyEvents.next() == .caughtUp)
            await client.close()
        }
    }

    /// A watch whose reader is behind buffers no more than its consumer's limit (plus the
    /// server's window), not the whole bucket; read, it delivers every value, then caught up.
    @Test func aSlowWatchReaderHoldsTheServerBack() async throws {
        try await withNATSServer { server in
            let client = try await server.connectedClient()
            let kv = try await JetStream(client: client).keyValue(KeyValueConfiguration(bucket: "big"))
            let value = [UInt8](repeating: 0x42, count: 64 * 1024)
            let count = 300  // 19 MiB
            for i in 0..<count { _ = try await kv.put("k\(i)", value: value) }
            let watch = try await kv.watch()
            var before = -1
            while watch.consumer.backlog.bytes != before {
                before = watch.consumer.backlog.bytes
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(before < 8 * 1024 * 1024, "\(before) bytes buffered for a reader that reads nothing")
            var keys = Set<String>()
            for try await event in watch {
                guard case .entry(let entry) = event else { break }
                #expect(entry.value.count == value.count)
                keys.insert(entry.key)
            }
            #expect(keys.count == count)
            await client.close()
        }
    }

    @Test func fiftyConcurrentCreatesOnOneKeyExactlyOneWins() async throws {
        try await withNATSServer { server in
            // Several connections, as several controllers would have.
            var clients: [NATSClient] = []
            for _ in 0..<5 { clients.append(try await server.connectedClient()) }
            let bucket = try await JetStream(client: clients[0]).keyValue(KeyValueConfiguration(bucket: "plane_locks"))
            _ = bucket
            let results = try await withThrowingTaskGroup(of: Result<UInt64, NATSError>.self) { group in
                for i in 0..<50 {
                    let client = clients[i % clients.count]
                    group.addTask {
                        let kv = KeyValueBucket(js: JetStream(client: client), name: "plane_locks")
                        do {
                            return .success(try await kv.create("lock-key", value: Array("owner-\(i)".utf8)))
                        } catch let error as NATSError {
                            return .failure(error)
                        }
                    }
                }
                var all: [Result<UInt64, NATSError>] = []
                for try await r in group { all.append(r) }
                return all
            }
            let winners = results.compactMap { try? $0.get() }
            #expect(winners.count == 1)
            #expect(results.count == 50)
            for case .failure(let error) in results { #expect(error.code == .wrongLastSequence) }
            let owner = try await bucket.get("lock-key")
            #expect(owner?.revision == winners.first)
            #expect(owner?.string.hasPrefix("owner-") == true)
            for c in clients { await c.close() }
        }
    }

    @Test func ackSubjectParsing() {
        let v1 = JetStreamAckSubject("$JS.ACK.orders.cons.1.42.7.1676739794518207339.3")
        #expect(v1 == JetStreamAckSubject(streamSequence: 42, consumerSequence: 7, timestamp: 1_676_739_794_518_207_339, pending: 3))
        let v2 = JetStreamAckSubject("$JS.ACK.dom.ACCHASH.orders.cons.1.42.7.1676739794518207339.3.rand")
        #expect(v2?.streamSequence == 42 && v2?.pending == 3)
        #expect(JetStreamAckSubject("$JS.ACK.short") == nil)
        #expect(JetStreamAckSubject("foo.bar.a.b.c.d.e.f.g") == nil)
    }

    /// Where an ordered consumer goes on from after a delivery: the next stream sequence, or
    /// a reset when the delivery is not the expected one or names the last stream sequence
    /// there is (one past it would trap; nats-server refuses `$JS.ACK` replies from clients,
    /// so only a broken or hostile server, or one in its place, sends it).
    @Test func theStreamSequenceAfterADelivery() throws {
        let ack = try #require(JetStreamAckSubject("$JS.ACK.orders.cons.1.42.7.1676739794518207339.3"))
        #expect(ack.streamSequenceAfter(expectingConsumerSequence: 7) == 43)
        #expect(ack.streamSequenceAfter(expectingConsumerSequence: 6) == nil, "a gap")
        #expect(ack.streamSequenceAfter(expectingConsumerSequence: 8) == nil, "a repeat")
        let last = try #require(JetStreamAckSubject("$JS.ACK.orders.cons.1.18446744073709551615.1.0.0"))
        #expect(last.streamSequenceAfter(expectingConsumerSequence: 1) == nil)
    }
}

extension JetStreamAckSubject {
    init(streamSequence: UInt64, consumerSequence: UInt64, timestamp: Int64, pending: UInt64) {
        self.init("$JS.ACK.s.c.1.\(streamSequence).\(consumerSequence).\(timestamp).\(pending)")!
    }
}
