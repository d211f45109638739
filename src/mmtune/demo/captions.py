"""Vietnamese caption templates, slot fillers, and caption composition and social-media styling."""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence

from mmtune.demo.rules import IRONIC, NEG, NEUTRAL, POS

NFD_RATE = 0.03
# Extra sentences after the main one: test captions come out about half as long as train ones.
TRAIN_EXTRA_SENTENCES = ((0, 0.1), (1, 0.2), (2, 0.3), (3, 0.25), (4, 0.15))
TEST_EXTRA_SENTENCES = ((0, 0.9), (1, 0.1))

TIME = ["hôm nay", "sáng nay", "chiều nay", "tối nay", "tối qua", "cuối tuần này", "sáng thứ hai",
        "hôm qua", "giữa tuần", "ngày đầu tháng", "mùa thi này", "sáng chủ nhật", "trưa nay"]
PLACE = ["Sài Gòn", "Hà Nội", "Đà Nẵng", "Đà Lạt", "Cần Thơ", "Huế", "Thủ Đức", "quận 1", "Cầu Giấy",
         "ký túc xá", "làng đại học", "quê nhà", "Vũng Tàu", "Nha Trang", "Gò Vấp", "Hải Phòng"]
PERSON = ["mẹ", "ba", "crush", "sếp", "thầy chủ nhiệm", "cô giáo", "đứa bạn thân", "bạn cùng phòng",
          "người yêu", "ông anh họ", "nhóm trưởng", "chủ trọ", "bà ngoại"]
FOOD = ["phở", "bún bò", "cơm tấm", "bánh mì", "bún chả", "hủ tiếu", "bánh xèo", "lẩu", "trà sữa",
        "gà rán", "mì cay", "bò kho", "cơm gà", "bún riêu"]
SUBJECT = ["giải tích", "xác suất thống kê", "triết", "cấu trúc dữ liệu", "tiếng Anh", "vật lý đại cương",
           "lập trình C", "máy học", "kinh tế vi mô"]
SLOTS: dict[str, list[str]] = {"time": TIME, "place": PLACE, "person": PERSON, "food": FOOD,
                               "subject": SUBJECT, "clock": ["6 giờ sáng", "7 giờ tối", "12 giờ trưa",
                                                             "2 giờ sáng", "5 giờ chiều"]}

POLAR_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "weather": {
        POS: ["{time} trời đẹp quá, đi chơi thôi mn ơi", "Nắng đẹp thế này mà ở nhà thì phí lắm",
              "{place} {time} nắng vàng, trời xanh, yêu ghê", "Trời trong xanh, gió mát, đi dạo thích thật",
              "Cuối cùng cũng có một ngày nắng đẹp ở {place}", "Thời tiết {time} đẹp xỉu, ai đi cà phê không",
              "Nắng lên rồi, phơi đồ thôi", "{time} trời quang mây tạnh, chụp ảnh đẹp ghê"],
        NEG: ["{time} mưa to quá, kẹt ở {place} không về được", "Mưa từ sáng tới tối, ngập hết cả đường rồi",
              "Trời âm u cả ngày, buồn ngủ muốn xỉu", "Bão về, cả xóm mất điện, lạnh run người",
              "Đang đi thì mưa như trút nước, ướt hết cả người", "{place} {time} mưa gió bão bùng, chán thật",
              "Ngập tới đầu gối, xe chết máy giữa đường", "{time} sấm chớp đùng đùng, sợ muốn khóc"],
    },
    "food": {
        POS: ["{time} được {person} nấu cho nồi {food} ngon bá cháy",
              "Ăn {food} no căng bụng, hạnh phúc là đây",
              "Bữa tối đầy đủ món, nhìn thôi đã thấy no", "Quán {food} ở {place} ngon thật sự, ăn sạch luôn",
              "Lương về, đãi cả phòng một bữa {food} thịnh soạn",
              "Mâm cơm nhà làm có cá có thịt có canh, đủ đầy",
              "{food} ở {place} ngon nhức nách, ăn hai tô vẫn thèm"],
        NEG: ["Cuối tháng rồi, cơm còn không có mà ăn", "Mở tủ lạnh ra chỉ thấy cái đĩa trống trơn",
              "{time} nhịn đói vì hết tiền, thèm {food} quá",
              "Đặt {food} chờ 2 tiếng, shipper bùng, đói rã ruột",
              "Cả nhà ăn hết, phần mình chỉ còn cái đĩa không", "Hết sạch tiền, tối nay lại nhịn đói",
              "Đói bụng mà trong nhà không còn gì ăn, buồn ghê"],
    },
    "life": {
        POS: ["Qua môn {subject} rồi mn ơi, vui muốn khóc", "{time} được tăng lương, đời đẹp quá",
              "Crush rep tin nhắn rồi, hạnh phúc ghê", "Được {person} khen trước cả lớp, vui cả ngày",
              "Điểm {subject} được 9, không uổng công thức đêm ôn bài",
              "Cuối cùng cũng xong đồ án, nhẹ cả người",
              "Trúng tuyển rồi, cảm ơn mọi người đã ủng hộ", "{time} được nghỉ học, sướng quá trời"],
        NEG: ["Rớt môn {subject} lần thứ ba, buồn quá", "{time} bị trừ lương vì đi trễ 5 phút",
              "Crush seen mà không rep, thôi ngủ", "Bị {person} mắng cả buổi, chán không muốn nói",
              "Kẹt xe hai tiếng ở {place}, trễ luôn buổi phỏng vấn",
              "Deadline dí sát nút mà chưa làm được chữ nào",
              "Mất ví ở {place}, giờ không còn đồng nào", "Điểm {subject} được 2, khóc không thành tiếng"],
    },
    "battery": {
        POS: ["Sạc đầy pin 100%, đi chơi cả ngày không lo", "Có điện lại rồi, bật quạt thôi",
              "Pin trâu thật, xài từ sáng tới tối vẫn còn nhiều", "Mới thay pin điện thoại, mượt như mới",
              "Xóm mình {time} không cúp điện, mừng ghê", "Điện thoại sạc nhanh ghê, 20 phút là đầy"],
        NEG: ["Điện thoại hết pin giữa đường, không gọi được ai",
              "{time} mất điện cả khu {place}, nóng muốn xỉu",
              "Pin còn 1%, quên mang sạc dự phòng", "Cúp điện đúng lúc đang làm bài, mất hết file",
              "Laptop sập nguồn vì hết pin, chưa kịp lưu bài",
              "Mất điện từ sáng, điện thoại cũng sắp tắt nguồn"],
    },
    "signal": {
        POS: ["Wifi mới lắp nhanh thật, tải phim trong vài giây",
              "Mạng {time} mượt quá, chơi game không lag tí nào",
              "Đổi nhà mạng xong lướt web nhanh hẳn", "Wifi ở {place} mạnh ghê, họp online không bị giật",
              "Mạng căng đét, xem phim 4K không khựng"],
        NEG: ["Wifi lag quá, họp online rớt mạng liên tục", "Mạng chập chờn cả ngày, không nộp bài được",
              "{time} cá mập cắn cáp, mạng chậm như rùa", "Đang chơi game thì mất mạng, thua luôn trận",
              "Wifi ký túc xá yếu xìu, load mãi không xong"],
    },
}

NEUTRAL_TEMPLATES = [
    "Ảnh chụp ở {place} {time}", "{time} ở {place}", "Góc nhỏ ở {place}", "Ai biết đây là đâu không",
    "Lưu lại để mai mốt xem", "Chuyện thường ngày ở {place}", "Gửi {person}", "Ảnh này chụp lúc {clock}",
    "Tag đứa bạn hay đi cùng", "Một ngày như mọi ngày", "Mới chụp {time}", "Không biết nói gì",
    "Khi {person} hỏi bạn đang làm gì", "Cái này là gì vậy mn", "POV: {time} ở {place}",
    "Đăng cho có bài", "{person} gửi cho mình tấm này", "Ai còn nhớ chỗ này không",
]

IRONIC_OPENERS = ["Tuyệt vời", "Tuyệt vời ông mặt trời", "Hay quá ta", "Đỉnh thật sự", "Vui ghê chưa",
                  "Quá là may mắn luôn", "Hạnh phúc gì đâu", "Ôi thật là tuyệt", "Đời đẹp quá"]
IRONIC_PATTERNS = [
    "{opener}, lại {event} {emo}", "{opener}: {event} {emo}", "Cảm ơn {thanks} {emo}",
    "Ước gì ngày nào cũng {event} như {time} {emo}", "Mình thích nhất là {event}, thật đó {emo}",
    "Đúng là không gì vui bằng {event} {emo}", "Một ngày hoàn hảo: {event} {emo}",
]
IRONIC_EVENTS: dict[str, list[str]] = {
    "weather": ["mưa đúng lúc vừa phơi đồ xong", "vừa rửa xe xong thì trời đổ mưa",
                "đi chơi cuối tuần thì bão về",
                "quên áo mưa đúng hôm mưa to nhất năm"],
    "food": ["đặt đồ ăn ba tiếng vẫn chưa tới", "ăn mì gói với nước lọc", "mua trà sữa về bị đổ hết",
             "đói meo mà quán đóng cửa hết"],
    "life": ["rớt môn {subject} lần thứ ba", "bị gọi đi làm đúng ngày nghỉ",
             "lương về đủ trả nợ trong 5 phút",
             "deadline dồn hết vào một ngày", "kẹt xe hai tiếng ở {place}"],
    "battery": ["mất điện đúng giờ thi", "điện thoại hết pin đúng lúc cần gọi xe",
                "cúp điện đúng lúc nộp bài",
                "mất điện giữa trưa nắng 40 độ"],
    "signal": ["wifi rớt đúng lúc nộp bài", "mạng lag đúng lúc vào thi", "họp online thì mạng đứng hình",
               "đang chơi game thì mất mạng"],
}
IRONIC_THANKS: dict[str, list[str]] = {
    "weather": ["ông trời vì cơn mưa đúng giờ tan tầm", "ông trời vì cơn bão đúng ngày nghỉ lễ"],
    "food": ["shipper vì giao trà sữa chỉ còn nửa ly", "quán vì cho thêm sợi tóc vào tô {food}"],
    "life": ["phòng đào tạo vì xếp lịch thi trùng nhau", "sếp vì cho tăng ca đúng đêm giao thừa"],
    "battery": ["EVN vì cho cả xóm ngủ sớm", "cục sạc vì sạc cả đêm được 5%"],
    "signal": ["nhà mạng vì wifi nhanh như rùa", "nhà mạng vì cho mình một buổi tối không có mạng"],
}
IRONIC_EMOJI = ["🙃", "🙂", "👏👏", "🤡", ":)", "😊", "🙃🙃", ""]

FILLER = ["Chuyện là vậy đó.", "Ai hiểu không?", "Kể mn nghe nè.", "Tag đứa bạn vào xem đi.",
          "Nói chung là vậy.", "Chuyện thật 100%.", "Ảnh chụp bằng điện thoại nên hơi mờ.",
          "Share cho mn cùng xem.", "Ai ở {place} thì biết.", "Chụp {time}.", "Để đây thôi.",
          "Không biết mn sao chứ mình là vậy đó."]
EXTRA: dict[str, list[str]] = {
    POS: ["Vui ghê!", "Yêu đời quá.", "Mong ngày nào cũng vậy.", "Hạnh phúc đơn giản vậy thôi.",
          "Thích thật sự.", "Đỉnh v.l luôn."],
    NEG: ["Chán thật sự.", "Mệt mỏi quá.", "Buồn ghê.", "Muốn khóc luôn.", "Mệt c.h.ó thật.",
          "Đ.m cuộc đời.", "Xui hết chỗ nói."],
    IRONIC: ["Đời đúng là màu hồng 🙃", "Cuộc sống tươi đẹp ghê chưa.", "Mình ổn mà, ổn lắm :)",
             "Quá là hợp lý luôn."],
    NEUTRAL: [],
}
EMOJI: dict[str, list[str]] = {
    POS: ["😍", "🥰", "😂", "❤️", "🔥", ":))", "=))", "😆", "🤩", "<3"],
    NEG: ["😭", "😢", "🥲", ":((", "😤", "💔", "😩", ":("],
    NEUTRAL: ["👀", "🤔", "📸", ":v", "😶"],
    IRONIC: ["🙃", "🤡", "👏"],
}
HASHTAGS = ["#xuhuong", "#ThanhXuan", "#fyp", "#meme", "#sinhvien", "#haihuoc", "#viral", "#genz",
            "#cuocsong", "#tamtrang", "#reviewanngon"]
MENTIONS = ["@Minh Thư", "@Hoàng Long", "@Bảo Ngọc", "@Quốc Huy", "@Thảo Vy", "@Gia Bảo"]
TEENCODE = {"không": ["ko", "k", "hông"], "được": ["dc", "đc"], "gì": ["j"], "mọi người": ["mn", "mng"],
            "với": ["vs"], "rồi": ["r", "rùi"], "vậy": ["v", "zậy"], "biết": ["bít"], "thôi": ["thui"],
            "bạn": ["bn"], "luôn": ["lun"], "yêu": ["iu"], "quá": ["wá"]}
ELONGATE = ["quá", "ghê", "đẹp", "ơi", "vui", "buồn", "lắm", "trời", "thật"]
EMOJI_ONLY = ["👀👀👀", "🤔", "😶😶", "📸"]


def _fill(rng: random.Random, template: str) -> str:
    text = re.sub(r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]), template)
    return text[0].upper() + text[1:] if text else text


def _main_sentence(rng: random.Random, kind: str, topic: str) -> str:
    if kind in (POS, NEG):
        return _fill(rng, rng.choice(POLAR_TEMPLATES[topic][kind]))
    if kind == NEUTRAL:
        return _fill(rng, rng.choice(NEUTRAL_TEMPLATES))
    pattern = rng.choice(IRONIC_PATTERNS)
    parts = {"opener": rng.choice(IRONIC_OPENERS), "event": rng.choice(IRONIC_EVENTS[topic]),
             "thanks": rng.choice(IRONIC_THANKS[topic]), "emo": rng.choice(IRONIC_EMOJI),
             "time": "{time}"}
    return _fill(rng, pattern.format(**parts)).strip()


def _extra_sentence(rng: random.Random, kind: str) -> str:
    # Half the extras restate the caption's polarity, the rest are polarity-free chatter.
    pool = EXTRA[kind] if EXTRA[kind] and rng.random() < 0.5 else FILLER
    return _fill(rng, rng.choice(pool))


def _weighted(rng: random.Random, choices: Sequence[tuple[object, float]]) -> object:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _teencode(rng: random.Random, text: str) -> str:
    for word, subs in TEENCODE.items():
        if rng.random() < 0.7:
            text = re.sub(rf"(?<!\w){word}(?!\w)", lambda _m, s=subs: rng.choice(s), text)
    return text


def _elongate(rng: random.Random, text: str) -> str:
    present = [w for w in ELONGATE if re.search(rf"(?<!\w){w}(?!\w)", text)]
    if not present:
        return text
    word = rng.choice(present)
    base = unicodedata.normalize("NFD", word[-1])[0]
    return re.sub(rf"(?<!\w){word}(?!\w)", word + base * rng.randint(2, 4), text, count=1)


def _stylize(rng: random.Random, text: str, kind: str, split: str) -> str:
    """Social-media surface: teencode, emoji, hashtags, mentions, elongation, NFD."""
    if rng.random() < 0.3:
        text = _teencode(rng, text)
    if rng.random() < 0.12:
        text = _elongate(rng, text)
    if rng.random() < 0.45:
        text += " " + "".join(rng.choice(EMOJI[kind]) for _ in range(rng.randint(1, 3)))
    tag_rate = 0.3 if split == "train" else 0.08
    if rng.random() < tag_rate:
        text += " " + " ".join(rng.sample(HASHTAGS, rng.randint(1, 3)))
    if rng.random() < 0.06:
        text = rng.choice(MENTIONS) + " " + text if rng.random() < 0.5 else text + " " + rng.choice(MENTIONS)
    if rng.random() < 0.15:
        text = text[0].lower() + text[1:]
    if rng.random() < NFD_RATE:
        text = unicodedata.normalize("NFD", text)
    return text


def _compose_caption(rng: random.Random, kind: str, topic: str, split: str) -> str:
    sentences = [_main_sentence(rng, kind, topic)]
    n_extra = int(_weighted(rng, TRAIN_EXTRA_SENTENCES if split == "train" else TEST_EXTRA_SENTENCES))
    for _ in range(n_extra):
        extra = _extra_sentence(rng, kind)
        if extra not in sentences:
            sentences.append(extra)
    text = sentences[0]
    for sentence in sentences[1:]:
        ended = text[-1] in ".!?:)" or not text[-1].isascii()
        text += rng.choice([" ", "\n"] if ended else [". ", "! ", " ", "\n", "... ", ", "]) + sentence
    return _stylize(rng, text, kind, split)


def _long_caption(rng: random.Random, kind: str, topic: str) -> str:
    sentences = [_main_sentence(rng, kind, topic)]
    while sum(len(s.split()) for s in sentences) <= 320:
        extra = rng.random() < 0.5
        sentences.append(_extra_sentence(rng, kind) if extra else _main_sentence(rng, kind, topic))
    return " ".join(sentences)
