"""The LangChain RAG tutorial chain: what a LangChain user would write instead of slmkit (the benchmarks' anchor).

As in LangChain's "Build a RAG app" tutorial (part 1), with the local pieces swapped in:

    files -> one Document each (as TextLoader)
          -> RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)
          -> Chroma (langchain_chroma, persisted) with the same embedder as slmkit's knowledge base
    question -> similarity_search (k=4) -> "\\n\\n".join(passages) -> the tutorial's prompt ("rlm/rag-prompt")
             -> the same chat model (ChatLocalSLM, greedy) -> reply

A reply counts as a decline when it says it does not know or that the context does not say
(``squad_data.declines``), which the tutorial's prompt asks for ("If you don't know the answer, just say that you
don't know").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate

RAG_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "human",
            "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to "
            "answer the question. If you don't know the answer, just say that you don't know. Use three sentences "
            "maximum and keep the answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:",
        )
    ]
)
"""The tutorial's prompt, ``hub.pull("rlm/rag-prompt")``, written out (no hub access here)."""


@dataclass
class ChainReply:
    text: str
    passages: list[Document]
    first_token_ms: float
    total_ms: float
    decode_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class TutorialChain:
    """The tutorial's retrieve-then-generate steps over one folder of text files."""

    def __init__(self, folder: Path, persist: Path, model: str, *, max_tokens: int = 128, k: int = 4) -> None:
        from langchain_chroma import Chroma
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from slmkit.agent import ChatLocalSLM
        from slmkit.core.embeddings import SentenceTransformerEmbeddings

        self.k = k
        name = "tutorial-" + folder.name.replace("_", "-")
        self.store = Chroma(
            collection_name=name[:60],
            embedding_function=SentenceTransformerEmbeddings(),
            persist_directory=str(persist),
        )
        if not self.store.get(limit=1)["ids"]:
            docs = [  # what langchain_community's TextLoader makes of each file
                Document(page_content=path.read_text(encoding="utf-8"), metadata={"source": str(path)})
                for path in sorted(folder.glob("*.txt"))
            ]
            splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)
            self.store.add_documents(splitter.split_documents(docs))
        self.llm = ChatLocalSLM(model=model, temperature=0.0, max_tokens=max_tokens)

    def ask(self, question: str) -> ChainReply:
        started = time.perf_counter()
        passages = self.store.similarity_search(question, k=self.k)
        messages = RAG_PROMPT.invoke(
            {"question": question, "context": "\n\n".join(doc.page_content for doc in passages)}
        ).to_messages()
        first: float | None = None
        parts: list[str] = []
        for chunk in self.llm.stream(messages):
            if first is None and chunk.content:
                first = time.perf_counter()
            parts.append(str(chunk.content))
        end = time.perf_counter()
        return ChainReply(
            text="".join(parts).strip(),
            passages=passages,
            first_token_ms=((first or end) - started) * 1000,
            total_ms=(end - started) * 1000,
        )
