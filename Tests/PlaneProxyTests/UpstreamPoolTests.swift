import NIOCore
import NIOPosix
@testable import PlaneProxy
import PlaneTestSupport
import Testing

/// The keep-alive pool against a real backend: connections come back, stale ones are
/// closed (and their close, which reports back into the pool, does not trip over the
/// pool's own bookkeeping), a full pool closes what it cannot keep.
@Suite(.timeLimit(.minutes(2)))
struct UpstreamPoolTests {
    /// A plane-test-server on a free loopback port, answering; its `host:port`.
    func startBackend() async throws -> (ChildProcess, String) {
        let port = try TestEnvironment.freePort()
        let backend = try ChildProcess(try TestExecutables.path("plane-test-server"), environment: ["PORT": String(port), "HOST": "127.0.0.1"])
        _ = try await HTTPProbe(port: port).waitUntilAnswering("/")
        return (backend, "127.0.0.1:\(port)")
    }

    @Test func staleConnectionsCloseAndFreshOnesComeBack() async throws {
        let (backend, address) = try await startBackend()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let pool = UpstreamPool(eventLoop: loop, maxIdle: 1, maxHeadBytes: 4096, idleLifetime: .milliseconds(200), sweepInterval: .hours(1))
        let first = try await pool.connectChannel(address, timeout: .seconds(5)).get()
        let second = try await pool.connectChannel(address, timeout: .seconds(5)).get()
        let (reused, full) = try await loop.submit {
            let handlers = try [first, second].map { try $0.pipeline.syncOperations.handler(type: UpstreamHandler.self) }
            let bucket = pool.bucket(for: address)
            pool.give(handlers[0], to: bucket, now: .now())
            pool.give(handlers[1], to: bucket, now: .now())  // beyond maxIdle: closed
            return (pool.take(from: bucket, now: .now()) === handlers[0], pool.take(from: bucket, now: .now()) == nil)
        }.get()
        #expect(reused && full)
        #expect(try await eventually { !second.isActive })
        // Parked again, then older than the idle lifetime: taking it closes it instead (the
        // sweeper is an hour away, so this is `take`'s own check).
        try await loop.submit { pool.give(try first.pipeline.syncOperations.handler(type: UpstreamHandler.self), to: pool.bucket(for: address), now: .now()) }.get()
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await loop.submit { pool.take(from: pool.bucket(for: address), now: .now()) == nil }.get())
        #expect(try await eventually { !first.isActive })
        try await loop.submit { pool.closeAll() }.get()
        await backend.stop()
    }

    /// A client connection keeps the bucket of its last backend; once the sweeper has
    /// emptied and removed that bucket, the kept one is not used again: a connection given
    /// back after that lands where the next `take` finds it.
    @Test func aBucketTheSweeperRemovedIsNotUsedAgain() async throws {
        let (backend, address) = try await startBackend()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let pool = UpstreamPool(eventLoop: loop, maxIdle: 2, maxHeadBytes: 4096, idleLifetime: .milliseconds(100), sweepInterval: .milliseconds(50))
        let first = try await pool.connectChannel(address, timeout: .seconds(5)).get()
        let kept = try await loop.submit {
            let bucket = pool.bucket(for: address)
            pool.give(try first.pipeline.syncOperations.handler(type: UpstreamHandler.self), to: bucket, now: .now())
            return bucket
        }.get()
        // The sweeper closes the connection once it is idle past its lifetime, and drops the emptied bucket.
        #expect(try await eventually { try await loop.submit { kept.retired }.get() })
        #expect(!first.isActive)
        let second = try await pool.connectChannel(address, timeout: .seconds(5)).get()
        let (replaced, found) = try await loop.submit {
            let handler = try second.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            let bucket = pool.bucket(for: address, cached: kept)
            pool.give(handler, to: bucket, now: .now())
            return (bucket !== kept, pool.take(from: pool.bucket(for: address), now: .now()) === handler)
        }.get()
        #expect(replaced && found)
        try await loop.submit { pool.closeAll() }.get()
        await backend.stop()
    }

    /// The sweeper holds the pool only while the pool holds connections: once it has closed
    /// the last one it stops, and a pool nobody uses any more is freed.
    @Test func theSweeperStopsWithTheLastConnection() async throws {
        let (backend, address) = try await startBackend()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        weak var freed: UpstreamPool?
        var connection: (any Channel)?
        do {
            let pool = UpstreamPool(eventLoop: loop, maxIdle: 2, maxHeadBytes: 4096, idleLifetime: .milliseconds(100), sweepInterval: .milliseconds(50))
            freed = pool
            let channel = try await pool.connectChannel(address, timeout: .seconds(5)).get()
            connection = channel
            // Parked (checked in the same turn of the loop, before any sweep can run).
            let parked = try await loop.submit {
                pool.give(try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self), to: pool.bucket(for: address), now: .now())
                return pool.bucket(for: address).connections.count == 1
            }.get()
            #expect(parked)
        }
        // The sweeper closes it once it is idle past its lifetime, stops, and lets the pool go.
        #expect(try await eventually { connection?.isActive == false })
        #expect(try await eventually { freed == nil })
        await backend.stop()
    }

    /// A bucket made for a backend that never got a connection back (every connect to it
    /// failed) leaves the pool with the next sweep, and the pool is freed: one bucket per
    /// backend address ever tried would otherwise stay for the drone's lifetime.
    @Test func aBucketThatNeverHeldAConnectionLeavesThePool() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        weak var freed: UpstreamPool?
        let bucket: UpstreamPool.Bucket
        do {
            let pool = UpstreamPool(eventLoop: loop, maxIdle: 2, maxHeadBytes: 4096, idleLifetime: .milliseconds(100), sweepInterval: .milliseconds(50))
            freed = pool
            bucket = try await loop.submit {
                let bucket = pool.bucket(for: "127.0.0.1:1")
                #expect(pool.take(from: bucket, now: .now()) == nil)
                return bucket
            }.get()
        }
        #expect(try await eventually { try await loop.submit { bucket.retired }.get() })
        #expect(try await eventually { freed == nil })
    }
}
