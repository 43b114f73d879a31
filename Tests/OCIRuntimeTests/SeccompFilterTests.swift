import ContainerRuntime
import Foundation
@testable import OCIRuntime
import Testing

/// The compiled seccomp filter (what crun is handed instead of compiling the profile per
/// start), run in a small classic-BPF interpreter on made-up syscalls: the decisions must
/// be the profile's.
struct SeccompFilterTests {
    static let allow: UInt32 = 0x7fff_0000
    static func errno(_ value: UInt32) -> UInt32 { 0x0005_0000 | value }
    static let killThread: UInt32 = 0

    static let x86_64: UInt32 = 0xC000_003E
    static let i386: UInt32 = 0x4000_0003
    static let aarch64: UInt32 = 0xC000_00B7

    @Test func theDefaultProfileDecidesAsItsRulesSay() throws {
        let filter = try SeccompFilter(compiling: try SeccompProfile.standard().seccomp)
        #expect(filter.instructionCount > 100 && filter.instructionCount <= 4096, "the kernel takes at most 4096 instructions")
        let machine = try ClassicBPFMachine(program: filter.program)
        // Allowed, denied (EPERM), and clone3's ENOSYS so that libcs fall back to clone.
        #expect(try machine.run(arch: Self.x86_64, nr: 0) == Self.allow, "read")
        #expect(try machine.run(arch: Self.x86_64, nr: 272) == Self.errno(1), "unshare")
        #expect(try machine.run(arch: Self.x86_64, nr: 250) == Self.errno(1), "keyctl")
        #expect(try machine.run(arch: Self.x86_64, nr: 165) == Self.errno(1), "mount")
        #expect(try machine.run(arch: Self.x86_64, nr: 246) == Self.errno(1), "kexec_load")
        #expect(try machine.run(arch: Self.x86_64, nr: 175) == Self.errno(1), "init_module")
        #expect(try machine.run(arch: Self.x86_64, nr: 101) == Self.allow, "ptrace, allowed as Docker allows it on kernels from 4.8")
        #expect(try machine.run(arch: Self.x86_64, nr: 435) == Self.errno(38), "clone3")
        // Arguments: personality only with the listed personas, socket but AF_VSOCK, clone
        // without namespace flags.
        #expect(try machine.run(arch: Self.x86_64, nr: 135, args: [0]) == Self.allow)
        #expect(try machine.run(arch: Self.x86_64, nr: 135, args: [0x0040_0000]) == Self.errno(1))
        #expect(try machine.run(arch: Self.x86_64, nr: 41, args: [2]) == Self.allow, "socket(AF_INET)")
        #expect(try machine.run(arch: Self.x86_64, nr: 41, args: [40]) == Self.errno(1), "socket(AF_VSOCK)")
        #expect(try machine.run(arch: Self.x86_64, nr: 56, args: [0x003d_0f00]) == Self.allow, "clone for a thread")
        #expect(try machine.run(arch: Self.x86_64, nr: 56, args: [0x1000_0011]) == Self.errno(1), "clone(CLONE_NEWUSER)")
        // The 32-bit ABI is filtered by its own numbers; other architectures are killed.
        #expect(try machine.run(arch: Self.i386, nr: 3) == Self.allow, "read on i386")
        #expect(try machine.run(arch: Self.i386, nr: 310) == Self.errno(1), "unshare on i386")
        #expect(try machine.run(arch: Self.aarch64, nr: 63) == Self.killThread)
    }

    @Test func actionsErrnoValuesAndRepeatedArgumentsAreCompiledLikeTheRuntimesDo() throws {
        let profile = OCIRuntimeSpec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", defaultErrnoRet: nil, architectures: ["SCMP_ARCH_X86_64"], syscalls: [
            .init(names: ["unshare", "not_a_syscall"], action: "SCMP_ACT_ERRNO", errnoRet: 13, args: nil),
            .init(names: ["read"], action: "SCMP_ACT_ALLOW", errnoRet: nil, args: nil),  // the default: left out
            // The same argument twice: one rule per comparison (either one matching denies).
            .init(names: ["socket"], action: "SCMP_ACT_ERRNO", errnoRet: nil, args: [
                .init(index: 0, value: 16, valueTwo: nil, op: "SCMP_CMP_EQ"), .init(index: 0, value: 40, valueTwo: nil, op: "SCMP_CMP_EQ"),
            ]),
            .init(names: ["ptrace"], action: "SCMP_ACT_KILL_PROCESS", errnoRet: nil, args: nil),
        ])
        let machine = try ClassicBPFMachine(program: try SeccompFilter(compiling: profile).program)
        #expect(try machine.run(arch: Self.x86_64, nr: 272) == Self.errno(13))
        #expect(try machine.run(arch: Self.x86_64, nr: 0) == Self.allow)
        #expect(try machine.run(arch: Self.x86_64, nr: 41, args: [16]) == Self.errno(1))
        #expect(try machine.run(arch: Self.x86_64, nr: 41, args: [40]) == Self.errno(1))
        #expect(try machine.run(arch: Self.x86_64, nr: 41, args: [2]) == Self.allow)
        #expect(try machine.run(arch: Self.x86_64, nr: 101) == 0x8000_0000)
    }

    @Test func aProfileLibseccompCannotCompileIsRefusedWithTheReason() throws {
        var profile = OCIRuntimeSpec.Seccomp(defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: nil, architectures: ["SCMP_ARCH_VAX"], syscalls: [])
        #expect(throws: RuntimeError.self) { try SeccompFilter(compiling: profile) }
        profile.architectures = nil
        profile.syscalls = [.init(names: ["read"], action: "SCMP_ACT_ALLOW", errnoRet: nil, args: [.init(index: 7, value: 0, valueTwo: nil, op: "SCMP_CMP_EQ")])]
        let error = try #require(throws: RuntimeError.self) { try SeccompFilter(compiling: profile) }
        #expect(error.code == .invalidSpec && error.message.contains("argument 7"))
        profile.syscalls = [.init(names: ["read"], action: "SCMP_ACT_NOTHING", errnoRet: nil, args: nil)]
        #expect(throws: RuntimeError.self) { try SeccompFilter(compiling: profile) }
    }
}

/// Runs a classic BPF program (the subset libseccomp emits) on a `seccomp_data`.
struct ClassicBPFMachine {
    struct Instruction { let code: UInt16, jt: UInt8, jf: UInt8, k: UInt32 }
    let instructions: [Instruction]

    init(program: [UInt8]) throws {
        #expect(program.count % 8 == 0)
        instructions = stride(from: 0, to: program.count, by: 8).map { offset in
            let word = { (at: Int) in UInt32(program[at]) | UInt32(program[at + 1]) << 8 | UInt32(program[at + 2]) << 16 | UInt32(program[at + 3]) << 24 }
            return Instruction(code: UInt16(program[offset]) | UInt16(program[offset + 1]) << 8, jt: program[offset + 2], jf: program[offset + 3], k: word(offset + 4))
        }
    }

    struct Unsupported: Error { let code: UInt16 }

    func run(arch: UInt32, nr: Int32, args: [UInt64] = []) throws -> UInt32 {
        // struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
        var data = [UInt32](repeating: 0, count: 16)
        data[0] = UInt32(bitPattern: nr)
        data[1] = arch
        for (index, argument) in args.enumerated() {
            data[4 + 2 * index] = UInt32(truncatingIfNeeded: argument)
            data[5 + 2 * index] = UInt32(truncatingIfNeeded: argument >> 32)
        }
        var accumulator: UInt32 = 0, index: UInt32 = 0
        var memory = [UInt32](repeating: 0, count: 16)
        var pc = 0
        while pc < instructions.count {
            let instruction = instructions[pc]
            pc += 1
            switch instruction.code {
            case 0x20: accumulator = data[Int(instruction.k / 4)]  // ld [k]
            case 0x00: accumulator = instruction.k  // ld #k
            case 0x01: index = instruction.k  // ldx #k
            case 0x60: accumulator = memory[Int(instruction.k)]  // ld M[k]
            case 0x61: index = memory[Int(instruction.k)]  // ldx M[k]
            case 0x02: memory[Int(instruction.k)] = accumulator  // st M[k]
            case 0x03: memory[Int(instruction.k)] = index  // stx M[k]
            case 0x54: accumulator &= instruction.k  // and #k
            case 0x44: accumulator |= instruction.k  // or #k
            case 0x04: accumulator &+= instruction.k  // add #k
            case 0x14: accumulator &-= instruction.k  // sub #k
            case 0x87: accumulator = index  // txa
            case 0x07: index = accumulator  // tax
            case 0x05: pc += Int(instruction.k)  // ja
            case 0x15: pc += Int(accumulator == instruction.k ? instruction.jt : instruction.jf)  // jeq #k
            case 0x25: pc += Int(accumulator > instruction.k ? instruction.jt : instruction.jf)  // jgt #k
            case 0x35: pc += Int(accumulator >= instruction.k ? instruction.jt : instruction.jf)  // jge #k
            case 0x45: pc += Int(accumulator & instruction.k != 0 ? instruction.jt : instruction.jf)  // jset #k
            case 0x06: return instruction.k  // ret #k
            case 0x16: return accumulator  // ret a
            default: throw Unsupported(code: instruction.code)
            }
        }
        throw Unsupported(code: 0xffff)
    }
}
