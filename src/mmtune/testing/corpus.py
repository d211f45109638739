"""What every tiny model's tokenizer is trained on: a small Vietnamese + English corpus, and byte-pair merges
learned here.

Why BPE and WordPiece merges are learned here and not by `tokenizers`' trainers: those break ties between equally
frequent pairs in hash-map order, so two builds (even in one process) differ, and so would token ids for the
same weights.
"""

from __future__ import annotations

import heapq
import string
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

HIDDEN = 32
LAYERS = 2
HEADS = 2
INTERMEDIATE = 64
VOCAB_SIZE = 1000  # upper bound for the BPE and WordPiece vocabularies

# Meme-like captions: diacritics, teencode, emoji, hashtags, mentions, English and code-mixed lines.
CORPUS: tuple[str, ...] = (
    "Trời đẹp quá 😂 #xuhuong",
    "Hôm nay trời đẹp quá, đi chơi thôi mn ơi 🌞",
    "Mưa to quá, kẹt xe ở Sài Gòn hai tiếng 😭",
    "Ăn phở no căng bụng, hạnh phúc là đây 🍜",
    "Cuối tháng rồi, cơm còn không có mà ăn 🙃",
    "Crush seen mà không rep, thôi ngủ 😴",
    "Qua môn giải tích rồi, vui muốn khóc 🥲",
    "Rớt môn lần thứ ba, buồn quá đi thôi 💔",
    "Được tăng lương, đời đẹp quá trời luôn 💸",
    "Bị trừ lương vì đi trễ 5 phút, cảm ơn sếp nhiều nha 👏",
    "ko bít nói j luôn, đỉnh thật sự 🤡",
    "đc nghỉ học r, sướng quá trời ơi 🎉",
    "bạn ơi mk đói quá, đi ăn bún bò hk? 🤤",
    "thật là tuyệt vời khi mất điện giữa trưa hè 🔥🔥",
    "Wifi nhà mình nhanh ghê, tải một bộ phim mất có 3 tiếng 🐢",
    "Deadline dí sát nút mà chưa làm được chữ nào 📚",
    "Mẹ nấu nồi canh chua ngon bá cháy 😋 #giadinh",
    "Chủ nhật đi Đà Lạt săn mây, lạnh run người ❄️",
    "Hà Nội mùa thu, cà phê sáng với bạn thân ☕",
    "Sáng thứ hai, tắc đường ở Cầu Giấy như mọi khi 🚗🚗🚗",
    "Điểm tiếng Anh được 2, khóc không thành tiếng 😢",
    "Pin còn 1%, quên mang sạc dự phòng, đúng là ngày may mắn 🍀",
    "Đặt trà sữa chờ 2 tiếng, shipper bùng 🙂",
    "Nhà trọ ngập tới đầu gối, view biển miễn phí nè 🌊",
    "@minh_anh ơi, tối nay đi xem phim không? 🎬",
    "Xinh đẹp tuyệt vời như mình thì ai cũng thích thôi 💅",
    "Giá xăng lại tăng, ví tiền của tôi vui quá 😀",
    "Đội tuyển Việt Nam vô địch rồi, cả nước ăn mừng 🇻🇳⚽",
    "Thầy chủ nhiệm khen cả lớp chăm chỉ, lạ thật sự 🤔",
    "Quán bánh mì đầu hẻm ngon nhức nách 🥖",
    "Ông anh họ mua xe mới, cả xóm ra xem 🛵",
    "Người yêu tặng hoa ngày 8/3, cảm động ghê 🌹",
    "Đồ án xong rồi, nhẹ cả người, ngủ thôi 😪",
    "Bão về, cả xóm mất điện, lạnh run người ⛈️",
    "vl thật, sao lại có người nghĩ ra cái này 😳",
    "đi làm về mệt xỉu mà còn phải nấu cơm 😩",
    "trời ơi tin được không, lần đầu tiên đúng giờ ⏰",
    "cảm ơn vì tất cả nha, mãi yêu 💕",
    "hahaha cười đau bụng :)) =))",
    "buồn ghê :( nhưng mà thôi kệ ^^",
    "What a beautiful day to stay home and study 🙄",
    "This is fine, everything is fine 🔥",
    "When the teacher says the test will be easy 😂",
    "Me after one hour at the gym 💪 lol",
    "Monday again, so happy to be back at work",
    "The best meme of the year, no cap 🧢",
    "Nothing says love like a cold bowl of noodles at midnight",
    "Ngày mai thi rồi mà giờ vẫn chưa học chữ nào, bình tĩnh là chính 😎",
    "Ảnh này chụp ở Hội An, đẹp như tranh vẽ 📸",
    "Mua áo online nhận về size cho em bé, tuyệt vời ông mặt trời 👕",
    "Sếp bảo làm thêm giờ không lương, vui ghê ta 😃",
    "Tết này được lì xì nhiều quá, giàu rồi 🧧",
    "Hỏi thật, có ai thấy cái điều khiển ở đâu không? 📺",
    "Nóng 40 độ mà cắt điện, quá tuyệt 🥵",
)


def alphabet(lowercase: bool) -> list[str]:
    """Every Vietnamese letter (each vowel with each tone), the other ASCII letters, digits and punctuation."""
    tones = ["", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323"]
    vowels = [unicodedata.normalize("NFC", v + t) for v in "aăâeêioôơuưy" for t in tones]
    chars = vowels + list("bcdđfghjklmnpqrstvwxz0123456789") + list(string.punctuation)
    if not lowercase:
        chars += [c.upper() for c in chars]
    return sorted(set(chars))


def words(pipeline: Any) -> Counter[str]:
    """CORPUS as `pipeline` (a `tokenizers.Tokenizer`) normalizes and splits it: word -> count."""
    counts: Counter[str] = Counter()
    for line in CORPUS:
        text = pipeline.normalizer.normalize_str(line) if pipeline.normalizer else line
        counts.update(word for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(text))
    return counts


def learn_merges(counted: Sequence[tuple[list[str], int]], join: Callable[[str, str], str],
                 budget: int) -> list[tuple[str, str]]:
    """Byte-pair merges, the most frequent pair first and ties to the smallest pair, up to `budget` merges."""
    symbols = [list(word) for word, _ in counted]
    counts = [count for _, count in counted]
    pairs: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    heap: list[tuple[int, tuple[str, str]]] = []

    def tally(i: int, sign: int) -> None:
        for pair in zip(symbols[i], symbols[i][1:]):
            pairs[pair] += sign * counts[i]
            where[pair].add(i)
            heapq.heappush(heap, (-pairs[pair], pair))

    for i in range(len(symbols)):
        tally(i, 1)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < budget:
        negative_count, pair = heapq.heappop(heap)
        if pairs[pair] <= 0 or -negative_count != pairs[pair]:
            continue  # a stale heap entry
        merges.append(pair)
        merged = join(*pair)
        for i in sorted(where.pop(pair)):
            tally(i, -1)
            symbols[i] = _merge(symbols[i], pair, merged)
            tally(i, 1)
    return merges


def _merge(symbols: list[str], pair: tuple[str, str], merged: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def numbered(tokens: list[str]) -> dict[str, int]:
    """Ids 0..n-1 for the tokens, first occurrence kept: two merges can make the same token ("ab"+"c", "a"+"bc"),
    and a gap in the ids would leave the model's vocab_size (= len(tokenizer)) short of the largest id."""
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}
