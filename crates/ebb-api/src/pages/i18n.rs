//! The refund page's words in English and Simplified Chinese. A language is a table of static strings;
//! the few sentences with values in them are functions, so word order can differ per language.

use ebb_core::address::AddressError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// `lang=` wins, then the first of `Accept-Language` ebb speaks (by q-value), then English.
    pub fn choose(asked: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(l) = asked.and_then(Lang::parse) {
            return l;
        }
        let speaks = [Lang::En, Lang::Zh];
        let codes = speaks.map(Lang::param);
        ebb_core::language::preferred(accept_language.unwrap_or(""), &codes).map_or(Lang::En, |i| speaks[i])
    }

    fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The value of `lang=` and of `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The other language, offered by the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

pub struct Texts {
    /// This language's name, in itself (the switch shows the other one's).
    pub name: &'static str,
    pub switch_label: &'static str,
    pub title: &'static str,
    pub amount: &'static str,
    pub network: &'static str,
    pub token: &'static str,
    pub address_label: &'static str,
    pub prefilled_hint: &'static str,
    pub no_prefill_hint: &'static str,
    pub warnings_title: &'static str,
    pub warn_payer: &'static str,
    pub warn_custodial: &'static str,
    pub warn_keys: &'static str,
    pub continue_button: &'static str,
    pub confirm_title: &'static str,
    pub confirm_intro: &'static str,
    pub confirm_button: &'static str,
    pub edit_button: &'static str,
    pub poison_warning: &'static str,
    pub poison_ack: &'static str,
    pub poison_ack_missing: &'static str,
    pub link_valid_until: &'static str,
    pub status_label: &'static str,
    pub receiving_address: &'static str,
    pub submitted_title: &'static str,
    pub submitted_text: &'static str,
    pub used_title: &'static str,
    pub used_text: &'static str,
    pub sending_title: &'static str,
    pub sending_text: &'static str,
    pub paid_title: &'static str,
    pub paid_text: &'static str,
    pub partial_title: &'static str,
    pub partial_text: &'static str,
    pub failed_title: &'static str,
    pub failed_text: &'static str,
    pub cancelled_title: &'static str,
    pub cancelled_text: &'static str,
    pub waiting_text: &'static str,
    pub auto_update: &'static str,
    pub transaction: &'static str,
    pub view_transaction: &'static str,
    pub return_to_merchant: &'static str,
    pub expired_title: &'static str,
    pub expired_text: &'static str,
    pub replaced_title: &'static str,
    pub replaced_text: &'static str,
    pub invalid_title: &'static str,
    pub invalid_text: &'static str,
    pub session_title: &'static str,
    pub session_text: &'static str,
    pub rate_title: &'static str,
    pub rate_text: &'static str,
    pub bad_request_title: &'static str,
    pub bad_request_text: &'static str,
    pub error_title: &'static str,
    pub error_text: &'static str,
    pub denied: &'static str,
    /// The address would lose the money (a burn address, a token contract, one of ebb's own).
    pub lost_destination: &'static str,
    pub too_long: &'static str,
    pub address_empty: &'static str,
    pub address_evm: &'static str,
    pub address_evm_checksum: &'static str,
    pub address_tron: &'static str,
    pub address_solana: &'static str,
    pub address_ok: &'static str,
    pub error_prefix: &'static str,
}

impl Texts {
    pub fn address_error(&self, e: &AddressError) -> &'static str {
        match e {
            AddressError::Empty => self.address_empty,
            AddressError::EvmSyntax => self.address_evm,
            AddressError::EvmChecksum { .. } => self.address_evm_checksum,
            AddressError::Tron => self.address_tron,
            AddressError::Solana => self.address_solana,
        }
    }

    pub fn warn_network(&self, symbol: &str, network: &str) -> String {
        if self.name == ZH.name {
            format!("只能接收 {network} 网络上的 {symbol}。请核对网络和地址（如钱包需要，请填写 Memo/Tag）。区块链转账不可撤回。")
        } else {
            format!(
                "Only {symbol} on {network} can be received. Check the network and the address (and a memo or tag if \
                 your wallet needs one). Blockchain transfers cannot be reversed."
            )
        }
    }

    /// The form's heading: who refunds.
    pub fn heading(&self, brand: &str) -> String {
        match (self.name == ZH.name, brand.is_empty()) {
            (true, true) => "退款".to_owned(),
            (true, false) => format!("来自 {brand} 的退款"),
            (false, true) => "Your refund".to_owned(),
            (false, false) => format!("Refund from {brand}"),
        }
    }

    pub fn address_for(&self, symbol: &str, network: &str) -> String {
        if self.name == ZH.name {
            format!("您在 {network} 网络上接收 {symbol} 的地址")
        } else {
            format!("Your address for receiving {symbol} on {network}")
        }
    }
}

pub static EN: Texts = Texts {
    name: "English",
    switch_label: "Language",
    title: "Refund",
    amount: "Amount",
    network: "Network",
    token: "Token",
    address_label: "Receiving address",
    prefilled_hint: "Pre-filled with the address you paid from. Change it if you cannot receive there.",
    no_prefill_hint: "Enter an address you control.",
    warnings_title: "Before you submit",
    warn_payer: "This page is for the original payer only. Do not forward it. If you did not make this payment, do not submit.",
    warn_custodial: "If the address belongs to an exchange or a custodial wallet, change it to an address you control, so that the refund reaches you on time.",
    warn_keys: "We will never ask for your private key, seed phrase or a verification code. Beware of scams.",
    continue_button: "Continue",
    confirm_title: "Check the address",
    confirm_intro: "Compare every group of characters with the address in your wallet. The refund goes to this address and cannot be reversed.",
    confirm_button: "Confirm and submit",
    edit_button: "Change the address",
    poison_warning: "This address starts and ends like the address you paid from, but it is a different address. Scammers create look-alike addresses. Only continue if you are sure this address is yours.",
    poison_ack: "I have compared the whole address and it is mine",
    poison_ack_missing: "Tick the box to confirm you compared the whole address.",
    link_valid_until: "This link is valid until",
    status_label: "Status",
    receiving_address: "Receiving address",
    submitted_title: "Address received",
    submitted_text: "Thank you. Your refund will be sent to this address shortly.",
    used_title: "This link has already been used",
    used_text: "An address was already submitted through this link. If it was not you, contact the merchant now.",
    sending_title: "Your refund is on its way",
    sending_text: "The transfer has been sent to the network and is waiting for confirmation.",
    paid_title: "Refund sent",
    paid_text: "The refund has been sent and confirmed.",
    partial_title: "Refund partly sent",
    partial_text: "Part of the refund was sent; the rest could not be. Please contact the merchant.",
    failed_title: "Refund failed",
    failed_text: "The refund could not be sent. Please contact the merchant.",
    cancelled_title: "Refund cancelled",
    cancelled_text: "The merchant cancelled this refund. Please contact the merchant if you have questions.",
    waiting_text: "The merchant asked for a new address for this refund. Use the newest link you received.",
    auto_update: "This page updates itself.",
    transaction: "Transaction",
    view_transaction: "View the transaction",
    return_to_merchant: "Return to the merchant",
    expired_title: "This link has expired",
    expired_text: "Ask the merchant for a new refund link.",
    replaced_title: "This link is no longer valid",
    replaced_text: "The merchant sent you a newer link for this refund. Please use that one.",
    invalid_title: "This link is not valid",
    invalid_text: "Check that you opened the whole link from the message you received.",
    session_title: "Your session has expired",
    session_text: "Nothing was submitted. Open the link again and submit once more.",
    rate_title: "Too many attempts",
    rate_text: "Nothing was submitted. Please wait a few minutes and try again.",
    bad_request_title: "Something is wrong with the form",
    bad_request_text: "Nothing was submitted. Open the link again and submit once more.",
    error_title: "Something went wrong",
    error_text: "Nothing was submitted. Please try again in a moment.",
    denied: "This address cannot be accepted. Please enter another address you control, or contact the merchant.",
    lost_destination: "Funds sent to this address would be lost (it is a contract, a burn address or a payment address). Please enter a wallet address you control.",
    too_long: "This is too long to be an address.",
    address_empty: "Enter the address.",
    address_evm: "This is not an address of this network: it should be 0x followed by 40 characters 0-9 and a-f.",
    address_evm_checksum: "This address has a typo: its upper and lower case letters do not match (EIP-55 checksum). Copy it again from your wallet.",
    address_tron: "This is not a Tron address: it should start with T and be copied exactly.",
    address_solana: "This is not a Solana address.",
    address_ok: "The address format is valid for this network.",
    error_prefix: "Error:",
};

pub static ZH: Texts = Texts {
    name: "简体中文",
    switch_label: "语言",
    title: "退款",
    amount: "金额",
    network: "网络",
    token: "币种",
    address_label: "收款地址",
    prefilled_hint: "已预填您付款时使用的地址。如果该地址无法收款，请修改。",
    no_prefill_hint: "请输入您自己控制的地址。",
    warnings_title: "提交前请注意",
    warn_payer: "本页面仅限原付款人使用，请勿转发。如果您不是原付款人，请勿提交。",
    warn_custodial: "如果该地址属于交易所或托管钱包，建议改为您自己控制的地址，以确保及时到账。",
    warn_keys: "我们绝不会索要您的私钥、助记词或验证码，谨防诈骗。",
    continue_button: "继续",
    confirm_title: "核对地址",
    confirm_intro: "请逐组核对以下字符与您钱包中的地址是否一致。退款将发送到此地址，且无法撤回。",
    confirm_button: "确认并提交",
    edit_button: "修改地址",
    poison_warning: "此地址的开头和结尾与您付款时的地址相同，但它是另一个地址。诈骗者会制造相似的地址。只有在确定此地址属于您时才继续。",
    poison_ack: "我已核对完整地址，确认属于我本人",
    poison_ack_missing: "请勾选确认您已核对完整地址。",
    link_valid_until: "链接有效期至",
    status_label: "状态",
    receiving_address: "收款地址",
    submitted_title: "地址已提交",
    submitted_text: "谢谢。退款将很快发送到此地址。",
    used_title: "此链接已被使用",
    used_text: "已有人通过此链接提交了地址。如果不是您本人，请立即联系商户。",
    sending_title: "退款正在发送",
    sending_text: "转账已发送到网络，正在等待确认。",
    paid_title: "退款已到账",
    paid_text: "退款已发送并确认。",
    partial_title: "退款部分完成",
    partial_text: "部分退款已发送，其余未能发送。请联系商户。",
    failed_title: "退款失败",
    failed_text: "退款未能发送。请联系商户。",
    cancelled_title: "退款已取消",
    cancelled_text: "商户已取消此退款。如有疑问，请联系商户。",
    waiting_text: "商户为此退款请求了新的地址。请使用您收到的最新链接。",
    auto_update: "本页面会自动更新。",
    transaction: "交易",
    view_transaction: "查看交易",
    return_to_merchant: "返回商户",
    expired_title: "此链接已过期",
    expired_text: "请联系商户获取新的退款链接。",
    replaced_title: "此链接已失效",
    replaced_text: "商户已为此退款发送了新的链接，请使用新链接。",
    invalid_title: "此链接无效",
    invalid_text: "请确认您打开的是消息中的完整链接。",
    session_title: "会话已过期",
    session_text: "尚未提交任何内容。请重新打开链接后再提交。",
    rate_title: "尝试次数过多",
    rate_text: "尚未提交任何内容。请等待几分钟后再试。",
    bad_request_title: "表单有误",
    bad_request_text: "尚未提交任何内容。请重新打开链接后再提交。",
    error_title: "出现错误",
    error_text: "尚未提交任何内容。请稍后再试。",
    denied: "无法接受此地址。请输入您控制的其他地址，或联系商户。",
    lost_destination: "发送到此地址的资金将会丢失（它是合约地址、销毁地址或收款地址）。请输入您控制的钱包地址。",
    too_long: "内容过长，不是有效地址。",
    address_empty: "请输入地址。",
    address_evm: "这不是该网络的地址：应为 0x 加 40 位 0-9、a-f 字符。",
    address_evm_checksum: "此地址有输入错误：大小写与校验和（EIP-55）不符。请从钱包重新复制。",
    address_tron: "这不是 Tron 地址：应以 T 开头，请准确复制。",
    address_solana: "这不是 Solana 地址。",
    address_ok: "地址格式符合该网络。",
    error_prefix: "错误：",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asked_language_wins_then_accept_language_by_quality() {
        assert_eq!(Lang::choose(Some("zh"), Some("en")), Lang::Zh);
        assert_eq!(Lang::choose(None, Some("zh-CN,zh;q=0.9,en;q=0.8")), Lang::Zh);
        assert_eq!(Lang::choose(None, Some("fr-FR, en;q=0.5, zh;q=0.9")), Lang::Zh);
        assert_eq!(Lang::choose(None, Some("de, fr")), Lang::En);
        assert_eq!(Lang::choose(Some("xx"), None), Lang::En);
        assert_eq!(Lang::choose(None, Some("en-US,zh;q=0.1")), Lang::En);
        assert_eq!(Lang::choose(None, Some("en;q=0.5,zh;q=0.75")), Lang::Zh);
    }
}
