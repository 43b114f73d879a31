import Foundation
@testable import PlaneFuzzTargets
import Testing

/// Every fuzz target over its corpus in `Tests/FuzzCorpus/<target>/`: the seeds, and every
/// input a fuzzer ever found to crash a target (kept there as `crash-*`), so a regression
/// fails here, in every `swift test`, without a fuzzing build.
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("FuzzCorpus").path

    static func inputs(of target: String) -> [String] {
        let folder = "\(corpus)/\(target)"
        return ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted().map { "\(folder)/\($0)" }
    }

    @Test(arguments: FuzzTargets.all.map(\.name))
    func corpusRunsWithoutAFinding(target name: String) throws {
        let target = try #require(FuzzTargets.named(name))
        let files = Self.inputs(of: name)
        #expect(files.count >= 2, "\(name) has a seed corpus in Tests/FuzzCorpus/\(name)")
        for file in files {
            target([UInt8](try #require(FileManager.default.contents(atPath: file))))
        }
        if name == LayerFuzzTarget.tarLayer.name { try? FileManager.default.removeItem(atPath: LayerFuzzTarget.base) }
    }

    /// Every target names a folder of the corpus, and every folder a target.
    @Test func corpusFoldersAreTargets() throws {
        let folders = Set(try FileManager.default.contentsOfDirectory(atPath: Self.corpus))
        #expect(folders == Set(FuzzTargets.all.map(\.name)))
    }
}
